"""``heal diagnose`` and ``heal export`` end to end against the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


def test_diagnose_json_has_the_contract_fields(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "python.module_not_found" / "py_import.txt"
    assert main(["diagnose", str(path), "--json", "--no-semantic", "--mode", "auto"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"fingerprint", "params", "match", "fix", "would_apply", "reason"}
    assert data["fingerprint"]["fine"].startswith(data["fingerprint"]["version"])
    assert data["match"]["pattern_id"] == "python.module_not_found"
    assert data["match"]["tier"] == 1 and data["match"]["score"] == 1.0
    assert data["fix"]["id"] == "python.module_not_found/fix"
    assert data["fix"]["kind"] == "command" and data["fix"]["category"] == "MODERATE"
    assert data["params"]["module"] == "yamlx_missing_mod"
    assert data["would_apply"] is False  # MODERATE needs graduation in mode auto


def test_diagnose_would_apply_follows_mode_and_category(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / "format.ruff_format" / "check.txt"
    monkeypatch.setenv("HEAL_MODE", "auto-safe")
    assert main(["diagnose", str(path), "--json", "--no-semantic"]) == 0
    assert json.loads(capsys.readouterr().out)["would_apply"] is True
    assert main(["diagnose", str(path), "--json", "--no-semantic", "--mode", "suggest"]) == 0
    assert json.loads(capsys.readouterr().out)["would_apply"] is False
    monkeypatch.setenv("HEAL_MODE", "yolo")
    assert main(["diagnose", str(path), "--no-semantic"]) == 2
    assert "HEAL_MODE='yolo'" in capsys.readouterr().err


def test_diagnose_would_apply_respects_the_operators_max_mode(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the stages would do: the operator's trust.max_mode (and a refused operator
    file's observe) caps the mode diagnose judges ``would_apply`` by."""
    path = FIXTURES / "format.ruff_format" / "check.txt"
    operator = tmp_path / "operator.toml"
    operator.write_text('[trust]\nmax_mode = "suggest"\n')
    operator.chmod(0o600)
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    assert main(["diagnose", str(path), "--json", "--no-semantic", "--mode", "auto"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["would_apply"] is False and data["mode"] == "suggest"
    assert "trust.max_mode caps mode auto at suggest" in data["reason"]
    # a refused operator file fails closed, as the stages do
    monkeypatch.delenv("HEAL_CONFIG")
    home = Path(heal_env["HEAL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "heal.toml").write_text('[trust]\nmax_mode = "everything"\n')
    (home / "heal.toml").chmod(0o600)
    assert main(["diagnose", str(path), "--json", "--no-semantic", "--mode", "auto-safe"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["would_apply"] is False and data["mode"] == "observe"
    assert "operator configuration refused" in data["reason"]


def test_diagnose_unmatched_and_bad_input(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bug.txt"
    path.write_text("Traceback (most recent call last):\nKeyError: 'tenant'\n")
    assert main(["diagnose", str(path), "--json", "--no-semantic"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["match"] == {"pattern_id": None, "tier": None, "score": 0.0,
                             "reason": data["match"]["reason"], "path": []}
    assert data["fix"] is None and data["would_apply"] is False
    assert main(["diagnose", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_export_json_and_yaml(heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "postgres"
    by_id = {p["id"]: p for p in data["patterns"]}
    assert by_id["git.merge_conflict"]["fixes"][0]["kind"] == "escalate"
    assert {"attempts", "successes", "state"} <= set(by_id["format.black"]["fixes"][0])
    assert main(["export", "--offline"]) == 0
    assert "id: python.module_not_found" in capsys.readouterr().out


RATE_LIMITED = "curl: (22) The requested URL returned error: 429"
TOKEN_EXPIRED = 'curl: (22) The requested URL returned error: 401 {"error": "token expired"}'


def _diagnose(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    path = tmp_path / f"error-{abs(hash(text))}.txt"
    path.write_text(text + "\n")
    assert main(["diagnose", str(path), "--json", "--no-semantic"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_diagnosing_twice_leaves_no_trace(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import Settings
    from storage.cache import LocalCache
    from storage.engines import open_database

    # Given one HEAL_HOME that diagnosed X (the rate limit), then Y (an expired token)
    first = _diagnose(tmp_path, RATE_LIMITED, capsys)
    assert first["match"]["pattern_id"] is not None
    after_x = _diagnose(tmp_path, TOKEN_EXPIRED, capsys)
    # and a fresh HEAL_HOME that diagnosed only Y
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "fresh-home"))
    fresh = _diagnose(tmp_path, TOKEN_EXPIRED, capsys)

    # Then Y gets the same answer in both: diagnosing X changed nothing
    assert after_x == fresh
    # and nothing was remembered: no fingerprint mapping, in the cache or in PostgreSQL
    monkeypatch.setenv("HEAL_HOME", heal_env["HEAL_HOME"])
    settings = Settings.from_env()
    fine, coarse = first["fingerprint"]["fine"], first["fingerprint"]["coarse"]
    cache = LocalCache.at_home(settings.home)
    assert cache.pattern_for(fine, "fine") is None and cache.pattern_for(coarse, "coarse") is None
    db = open_database(settings)
    try:
        assert db.fetchval("SELECT count(*) FROM pattern_fingerprints WHERE fingerprint = ANY"
                           "($1::text[])", [fine, coarse]) == 0
    finally:
        db.close()


@pytest.mark.parametrize("text", [
    "command exited with status 1 and printed nothing",  # heal run of `false`, `grep -q`
    "##[error]Process completed with exit code 1.",
])
def test_silent_failures_abstain_in_tier_2(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        text: str) -> None:
    path = tmp_path / "silent.txt"
    path.write_text(text + "\n")
    assert main(["diagnose", str(path), "--json"]) == 0  # semantic tier on
    data = json.loads(capsys.readouterr().out)
    assert data["match"]["pattern_id"] is None and data["fix"] is None
    assert "no evidence" in data["match"]["reason"]


def test_a_reference_masked_down_to_no_evidence_names_no_pattern(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """npm's `npm error code E404` normalizes to `ERROR: <idtoken>`, which says nothing of its
    cause: such a headline is no reference of tier 2 (before, `KeyError: 'key12'` matched it
    at 0.82 and got npm's package-not-found escalation)."""
    from pipeline.lookup.catalog import load_catalog
    from pipeline.lookup.semantic import evidence
    from pipeline.lookup.setup import reference_texts

    refs = reference_texts(load_catalog())
    assert refs and all(evidence(text) for _, _, text in refs)
    path = tmp_path / "keyerror.txt"
    path.write_text("KeyError: 'key12'\n")
    assert main(["diagnose", str(path), "--json"]) == 0  # semantic tier on
    data = json.loads(capsys.readouterr().out)
    assert data["match"]["pattern_id"] is None, data["match"]


OOM_KILLED = "##[error]Process completed with exit code 137."
EXIT_1 = "##[error]Process completed with exit code 1."
PUSH_401 = ("deployer.PushError: artifact store push of build bundle was refused: "
            "401 Unauthorized (token expired)")
PUSH_413 = ("deployer.PushError: artifact store push of build bundle was refused: "
            "413 Payload Too Large")


def test_a_mapping_learned_from_a_rule_answers_no_text_that_rule_does_not_match(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    from pipeline.config import Settings
    from pipeline.fingerprint import fingerprint_text
    from pipeline.lookup.setup import build_lookup
    from storage.engines import open_database

    # Given the lookup stage met an OOM kill (exit code 137) and an expired token (HTTP 401),
    # each named by a seed's detection rule, and learned their fingerprints. Each is learned
    # under the fingerprint of the error it gets confused with: exit code 1 shares the OOM's
    # fine fingerprint (the code is masked) and the 413 the 401's coarse one (same class,
    # same function); the test holds whatever the fingerprinter masks
    settings = Settings.from_env()
    db = open_database(settings)
    lookup = build_lookup(settings, db, semantic=False, warm=0)
    learned = {}
    for text, other, pattern in ((OOM_KILLED, EXIT_1, "proc.oom_killed"),
                                 (PUSH_401, PUSH_413, "auth.expired_credentials")):
        fp = fingerprint_text(other)
        learned[other] = fp
        result = lookup.lookup(error_id=f"e-{uuid.uuid4().hex}", text=text, fine=fp.fine,
                               coarse=fp.coarse, headline=fp.normalized)
        assert result.pattern_id == pattern and result.details.get("rule_matched"), result
    lookup.close()  # synced to PostgreSQL, where `heal diagnose` reads mappings
    try:
        assert db.fetchval("SELECT source FROM pattern_fingerprints WHERE fingerprint = $1 "
                           "AND level = 'fine'", learned[EXIT_1].fine) == "rule"
    finally:
        db.close()

    # Then exit code 1 is not an OOM kill, by the fine mapping or any other
    exit_1 = _diagnose(tmp_path, EXIT_1, capsys)
    assert exit_1["fingerprint"]["fine"] == learned[EXIT_1].fine
    assert exit_1["match"]["pattern_id"] is None, exit_1
    assert "learned from its detection rule, which does not match this text" in exit_1["reason"]
    # and a 413 is not told to renew credentials through the coarse mapping
    too_large = _diagnose(tmp_path, PUSH_413, capsys)
    assert too_large["fingerprint"]["coarse"] == learned[PUSH_413].coarse
    assert too_large["match"]["pattern_id"] != "auth.expired_credentials", too_large
    # while the texts the rules match still get their patterns at tier 1
    for text, pattern in ((OOM_KILLED, "proc.oom_killed"), (PUSH_401, "auth.expired_credentials")):
        again = _diagnose(tmp_path, text, capsys)
        assert (again["match"]["pattern_id"], again["match"]["tier"]) == (pattern, 1)
    # and offline, from the local cache alone, too
    path = tmp_path / "exit1.txt"
    path.write_text(EXIT_1 + "\n")
    assert main(["diagnose", str(path), "--json", "--no-semantic", "--offline"]) == 0
    assert json.loads(capsys.readouterr().out)["match"]["pattern_id"] is None
