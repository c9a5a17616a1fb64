"""Broken repositories built by scripts, for `bench/heal_rate.py` and the scenario tests."""
