"""Lifecycle and learning: graduate fixes that work, quarantine what is reverted, rank
candidates by Thompson sampling, score flakiness and learn DRAFT fixes from precedent.

The logic here is pure (no I/O); ``storage/lifecycle.py`` persists it and
``consumers/lifecycle.py`` drives it from the outcomes stream.
"""
