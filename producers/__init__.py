"""Everything that publishes ErrorEvents to ``heal:errors`` (one module per source).

| module        | source                                                            |
| ------------- | ----------------------------------------------------------------- |
| run.py        | ``heal run -- CMD``: a failing subprocess                         |
| watch.py      | ``heal watch PATH``: error records of followed log files          |
| transcript.py | failed tool calls in agent-session JSONL transcripts              |
| emit.py       | ``heal emit`` (JSON lines) and the Python API :func:`emit`        |
| hooks.py      | workflow hooks for an orchestrator                                |
| backfill.py   | ``heal backfill``: historical logs, and replay of the error stream |
"""

from producers.emit import emit

__all__ = ["emit"]
