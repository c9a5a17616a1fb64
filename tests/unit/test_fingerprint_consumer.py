"""The fingerprint stage: ErrorEvent in, FingerprintEvent out, deterministic ids."""

from __future__ import annotations

from pathlib import Path

from consumers import fingerprint as stage
from pipeline.config import Settings
from pipeline.events import ErrorEvent, FingerprintEvent, Repo
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.stage import StageContext

TRACEBACK = """Traceback (most recent call last):
  File "/srv/checkout/app/main.py", line 3, in <module>
    import yaml
ModuleNotFoundError: No module named 'yaml'
"""


def _ctx(tmp_path: Path) -> StageContext:
    settings = Settings(redis_url=None, database_url=None, home=tmp_path, prefix="t")
    return StageContext(settings=settings, stage="fingerprint")


def test_contract_names() -> None:
    assert (stage.GROUP, stage.INPUT, stage.OUTPUT) == ("fingerprint", "errors", "fingerprints")


def test_handle_produces_a_fingerprint_event_with_a_deterministic_id(tmp_path: Path) -> None:
    # Given an error event from a checkout
    event = ErrorEvent(id="e1", text=TRACEBACK, repo=Repo(path="/srv/checkout"))
    handler = stage.build(_ctx(tmp_path))
    # When it is handled twice (a redelivery)
    first = handler.handle(handler.decode(event.encode()))
    second = handler.handle(handler.decode(event.encode()))
    # Then one FingerprintEvent, same id and same fingerprint both times
    assert len(first) == 1
    out = first[0]
    assert isinstance(out, FingerprintEvent)
    assert out.id == "e1:fingerprint" and out.error_id == "e1"
    assert (out.fine, out.coarse) == (second[0].fine, second[0].coarse)
    assert out.version == ALGORITHM_VERSION and out.fine.startswith(ALGORITHM_VERSION + ":")
    assert out.params["module"] == "yaml" and out.params["file"] == "app/main.py"
    assert out.extraction["kind"] == "python"
    decoded = FingerprintEvent.decode(out.encode())
    assert decoded.fine == out.fine and decoded.params == out.params
