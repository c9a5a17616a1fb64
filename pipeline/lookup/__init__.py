"""Lookup: given a fingerprinted error, find the best known fix and say how it was found.

- ``catalog``   patterns with detection rules and declared fixes (from ``seeds/*.yaml``)
- ``guard``     genuine logic bugs never receive a SAFE or MODERATE fix
- ``semantic``  tier 2: all-MiniLM-L6-v2 embeddings (offline), cosine top-k, threshold
- ``causal``    tier 3: walk "A causes B" edges to a root cause with a fix
- ``service``   the three tiers in order, the SQLite cache, the outbox and the issue queue
"""
