"""Shared helpers of the trust-boundary tests (not a test module)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo, git
from pipeline.events import OutcomeEvent, VerdictEvent
from pipeline.guardrails.audit import canonical
from pipeline.validate.runner import run_argv


def victim_repo(tmp: Path, policy: str = 'mode = "suggest"\n') -> Path:
    """A real repository whose formatting check fails, with the given heal.toml committed."""
    root = create_repo(tmp / "victim")
    (root / "heal.toml").write_text(policy)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policy")
    break_formatting(root)
    return root


def write_operator(tmp: Path, text: str) -> Path:
    path = tmp / "operator.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def hostile_event(root: Path, pwned: Path, mode: str = "auto-safe") -> dict[str, Any]:
    """What an attacker XADDs: a real failure text of ``root`` (so a SAFE fix matches), a
    command that writes ``pwned``, and a mode above the repository's policy."""
    text = run_argv(["ruff", "format", "--check", "."], str(root), 60.0)["tail"]
    return {"v": 1, "id": f"evil-{uuid.uuid4().hex[:10]}", "text": text,
            "source": {"kind": "api", "name": "attacker"},
            "repo": {"path": str(root), "commit": git(root, "rev-parse", "HEAD"),
                     "branch": "main"},
            "command": ["sh", "-c", f"id >> {pwned}; ruff format --check ."],
            "exit_code": 1, "tags": {"mode": mode, "cwd": str(root)}}


def xadd_raw(client: redis.Redis, settings: Settings, stream: str, payload: Any) -> None:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    client.xadd(settings.stream(stream), {"event": raw})


def find(client: redis.Redis, settings: Settings, stream: str, error_id: str,
         kind: type[Any]) -> Any:
    for _id, fields in client.xrange(settings.stream(stream)):
        try:
            event = kind.decode(fields[b"event"])
        except Exception:  # noqa: BLE001 - other kinds are skipped
            continue
        if event.error_id == error_id:
            return event
    return None


def wait_outcome(client: redis.Redis, settings: Settings, error_id: str,
                 timeout_s: float = 120.0) -> OutcomeEvent | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = find(client, settings, "outcomes", error_id, OutcomeEvent)
        if outcome is not None:
            return outcome
        time.sleep(0.5)
    return None


def verdict_of(client: redis.Redis, settings: Settings, error_id: str) -> VerdictEvent | None:
    return find(client, settings, "verdicts", error_id, VerdictEvent)


def dead_letters(client: redis.Redis, settings: Settings) -> list[dict[str, str]]:
    out = []
    for _id, fields in client.xrange(settings.stream("dead")):
        out.append({k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
    return out


def heal_state(root: Path) -> tuple[str, str, str]:
    """HEAD, branches and status: what acting on a repository would change."""
    return (git(root, "rev-parse", "HEAD"), git(root, "branch", "-a"),
            git(root, "status", "--porcelain"))


def reseal(path: Path) -> None:
    """An attacker's re-seal: rewrite every record of an audit file with a key of their own,
    put in place of audit.key."""
    key = secrets.token_hex(32).encode()
    (path.parent / "audit.key").write_bytes(key)
    prev, out = "0" * 64, []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record["data"]["reason"] = "nothing to see"
        record["prev"] = prev
        body = {k: v for k, v in record.items() if k != "hash"}
        record["hash"] = hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()
        prev = record["hash"]
        out.append(canonical(record))
    path.write_text("\n".join(out) + "\n")
