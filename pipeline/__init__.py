"""heal's shared core: events, the stream runtime, fingerprinting, lookup, validation,
fix application, lifecycle, guardrails, policy and the CLI.

Imports neither ``producers`` nor ``consumers`` (the CLI loads them lazily by name).
"""

__version__ = "0.1.0"
