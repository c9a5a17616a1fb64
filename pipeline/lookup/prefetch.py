"""A head start for ``heal run`` of a failed step: read the seeds and load the embedding
model on a helper thread while the engines start, when the error will most likely need
tier 2. Light to import (everything heavy is imported on that thread)."""

from __future__ import annotations

import threading

from pipeline.config import Settings


def model_soon(settings: Settings, text: str) -> threading.Thread:
    """On a helper thread: parse the seeds and, when ``text`` will most likely need tier 2
    (:func:`pipeline.lookup.setup.model_while_waiting`), load the model. The lookup stage
    built later in this process finds both ready (seed files are parsed once per process, a
    loaded model is shared by every Embedder). Never raises: whatever fails here fails
    again, and is reported, on the real path."""

    def work() -> None:
        try:
            from pipeline.fingerprint import fingerprint_text
            from pipeline.lookup.setup import model_while_waiting

            fp = fingerprint_text(text)
            model_while_waiting(settings, text, fp.fine, fp.coarse, fp.normalized)
        except Exception:  # noqa: BLE001, S110 - only a head start; the real path reports
            pass

    # not a daemon: exit waits for it rather than cutting a load in half
    thread = threading.Thread(target=work, name="heal-load-model")
    thread.start()
    return thread
