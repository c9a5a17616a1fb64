"""Attack 6: the files heal reads as configuration. A repository's heal.toml is untrusted
input (a symbolic link to /dev/zero, a FIFO, 300 KB, bytes that are not UTF-8, brackets nested
100 000 deep, NaN thresholds): heal refuses it with a message naming the file and what to
change, never hangs, never prints a traceback, and a running stage keeps the last valid policy.
An operator configuration that exists (or that HEAL_CONFIG names) but cannot be used fails
closed: every mode is capped at observe and the decision says why. ``heal policy`` shows the
mode in force and reports a broken operator configuration. Real CLI; real engines for runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo
from tests.security._support import write_operator

WORKTREE = Path(__file__).resolve().parents[2]
CHECK = ["ruff", "format", "--check", "."]
HEAL = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"


def _repo(tmp: Path, name: str = "repo") -> Path:
    root = tmp / name
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return root


def _commit(root: Path, message: str = "change") -> None:
    ident = ["-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", *ident, "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", message], cwd=root, check=True)


def _link_to_a_file(path: Path) -> None:
    (path.parent / "real.toml").write_text('mode = "auto"\n')
    path.symlink_to("real.toml")


HOSTILE = {
    "a link to /dev/zero": (lambda p: p.symlink_to("/dev/zero"), "is a symbolic link"),
    "a link to a file": (lambda p: _link_to_a_file(p), "is a symbolic link"),
    "a FIFO": (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    "not UTF-8": (lambda p: p.write_bytes(b'mode = "auto\xff"\n'), "is not UTF-8 at byte 12"),
    "nested 100000 deep": (lambda p: p.write_text("a=" + "[" * 100_000 + "]" * 100_000 + "\n"),
                           "nested too deeply"),
    "300 KB": (lambda p: p.write_text("#" * 300_000 + "\n"), "larger than 256 KiB"),
    "a NaN threshold": (lambda p: p.write_text("[lifecycle]\nconfidence = nan\n"),
                        "lifecycle.confidence = nan: must be a number >= 0.5 and <= 0.999"),
    "an infinite timeout": (lambda p: p.write_text("[limits]\ncheck_timeout_s = inf\n"),
                            "limits.check_timeout_s = inf: must be a positive number <= 86400"),
    "a huge integer": (lambda p: p.write_text("[limits]\nmax_files = 99999999999999999999999\n"),
                       "limits.max_files = 99999999999999999999999: must be a positive integer"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_heal_toml_is_refused_by_heal_policy_with_what_to_change(
        tmp_path: Path, kind: str) -> None:
    root = _repo(tmp_path)
    make, said = HOSTILE[kind]
    make(root / "heal.toml")
    env = {**os.environ, "PYTHONPATH": str(WORKTREE), "HEAL_HOME": str(tmp_path / "home")}
    env.pop("HEAL_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", HEAL, "policy"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert said in done.stderr, done.stderr
    assert "heal.toml" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_heal_policy_shows_the_mode_the_operator_caps_and_reports_a_broken_operator_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = _repo(tmp_path)
    (root / "heal.toml").write_text('mode = "auto"\n')
    home = tmp_path / "home"
    monkeypatch.setenv("HEAL_HOME", str(home))
    operator = write_operator(tmp_path, '[trust]\nmax_mode = "observe"\n')
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    assert main(["policy", "--repo", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    mode = next(r for r in report["keys"] if r["key"] == "mode")
    assert mode["value"] == "observe" and mode["source"] == "operator"
    assert mode["requested"] == "auto" and "trust.max_mode" in mode["reason"]
    assert report["operator"]["max_mode"] == "observe" and report["file"] == str(
        root / "heal.toml")
    # named by HEAL_CONFIG and unusable: a configuration error, exit 2
    operator.chmod(0o664)
    assert main(["policy", "--repo", str(root)]) == 2
    assert "writable by other users" in capsys.readouterr().err
    monkeypatch.setenv("HEAL_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["policy", "--repo", str(root)]) == 2
    assert "no such file" in capsys.readouterr().err
    # $HEAL_HOME/heal.toml broken: what runs meet (capped at observe), said as a warning
    monkeypatch.delenv("HEAL_CONFIG")
    home.mkdir(mode=0o700)
    (home / "heal.toml").write_text('[trust]\nmax_mode = "everything"\n')
    (home / "heal.toml").chmod(0o600)
    assert main(["policy", "--repo", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "operator configuration refused" in err and "capped at observe" in err
    assert 'trust.max_mode = "everything"' in err
    assert '"observe"' in out and "operator" in out


@pytest.mark.parametrize("how", ["writable by others", "missing", "invalid value"])
def test_an_unusable_operator_configuration_caps_heal_run_at_observe(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    root = _repo(tmp_path)
    (root / "c.py").write_text("z = (1,\n 2)\n")
    _commit(root, "init")
    operator = write_operator(tmp_path, '[trust]\nmax_mode = "observe"\n')
    if how == "writable by others":
        operator.chmod(0o664)
    elif how == "missing":
        operator.unlink()
    else:
        operator.write_text("[trust]\nmax_mode = nan\n")
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert main(["run", "--mode", "auto-safe", "--timeout", "120", "--", *CHECK]) == 1
    err = capsys.readouterr().err
    assert "observed only" in err, err
    assert "operator configuration refused" in err and "capped at observe" in err, err
    assert (root / "c.py").read_text() == "z = (1,\n 2)\n", "a fix was applied"
    assert git(root, "rev-list", "--count", "HEAD") == "1"


@pytest.fixture
def validator(heal_env: dict[str, str], redis_url: str) -> Validator:
    return Validator(Settings.from_env(), redis.Redis.from_url(redis_url))


def test_the_validate_stage_keeps_the_last_valid_policy_when_heal_toml_turns_hostile(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    # auto-safe (the defaults would only suggest), dedupe off: every candidate is decided
    (root / "heal.toml").write_text('mode = "auto-safe"\n[limits]\ndedupe_minutes = 0\n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policy")
    break_formatting(root)
    command = ("ruff", "format", "--check", ".")
    first = validator.validate(candidate(root, command, FORMAT_FIX, mode=""))
    assert first.decision == "apply", first.reason
    policy = root / "heal.toml"
    for content, said in ((b'mode = "auto\xff"\n', "is not UTF-8 at byte 12"),
                          (("a=" + "[" * 100_000 + "]" * 100_000).encode(), "nested too deeply"),
                          (b"[limits]\ncheck_timeout_s = nan\n", "check_timeout_s = nan"),
                          (b"[lifecycle]\nconfidence = nan\n", "confidence = nan")):
        policy.write_bytes(content)
        verdict = validator.validate(candidate(root, command, FORMAT_FIX, mode=""))
        # the last valid policy (auto-safe, dedupe off) decided, and the verdict says why
        assert verdict.decision == "apply", (verdict.decision, verdict.reason)
        notes = [str(c.get("reason")) for c in verdict.preflight if c.get("name") == "policy"]
        assert any(said in n and "keeping the last valid policy" in n for n in notes), notes


def test_a_validation_that_raises_releases_its_dedupe_marker(
        tmp_path: Path, validator: Validator, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    command = ("ruff", "format", "--check", ".")
    client = redis.Redis.from_url(redis_url)
    pattern = validator.settings.key("validate", "request", "*")

    def boom(*_args: object) -> None:
        raise RuntimeError("verification broke")

    monkeypatch.setattr(validator.verifier, "verify", boom)
    with pytest.raises(RuntimeError):
        validator.validate(candidate(root, command, FORMAT_FIX, mode="suggest", fine="fp-same"))
    assert client.keys(pattern) == [], "the marker of an undecided request was kept"
    monkeypatch.undo()
    verdict = validator.validate(candidate(root, command, FORMAT_FIX, mode="suggest",
                                           fine="fp-same"))
    assert "identical request" not in verdict.reason, verdict.reason
    assert verdict.decision == "suggest", verdict.reason


def _alias_bomb(levels: int) -> bytes:
    """A pack of a few hundred bytes whose examples are 9**levels strings once its aliases
    are expanded ("billion laughs"; QA report qa_life, item 5)."""
    text = "heal_pack: 1\na0: &a0 [" + ",".join(['"lol"'] * 9) + "]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    text += ("patterns:\n- id: bomb.x\n  name: bomb\n  category: SAFE\n"
             "  detect: [{regex: 'QAERR-BOMB'}]\n"
             f"  examples: *a{levels - 1}\n"
             "  fix: {id: bomb.x/fix, kind: escalate, category: RISKY, title: t,"
             " explanation: e, message: m}\n")
    return text.encode()


@pytest.mark.parametrize("content, said", [
    (b"patterns: [\xff]\n", "is not UTF-8 at byte 11"),
    (b"patterns: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
    (None, "is a FIFO, not a regular file"),
    (_alias_bomb(7), "its aliases (*name) expand it to more than"),
    (_alias_bomb(10), "write the repeated values out instead of aliasing them"),
    (b"x: &a [*a, *a]\npatterns: *a\n", "its aliases (*name) expand it"),
    (b"patterns:\n- id: many.examples\n  examples: [" + b",".join([b"e"] * 101) + b"]\n",
     "pattern \"many.examples\" has 101 examples; a pattern holds at most 100"),
    (b"patterns: [" + b",".join([b"{}"] * 10_001) + b"]\n",
     "10001 patterns; a pack holds at most 10000"),
])
def test_heal_import_refuses_a_hostile_pack_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        content: bytes | None, said: str) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    pack = tmp_path / "pack.yaml"
    if content is None:
        os.mkfifo(pack)
    else:
        pack.write_bytes(content)
    assert main(["import", str(pack)]) == 2
    err = capsys.readouterr().err
    assert said in err and str(pack) in err, err
    assert "internal error" not in err


def _policy_cli(root: Path, home: Path, *args: str,
                **env: str) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "PYTHONPATH": str(WORKTREE), "HEAL_HOME": str(home)}
    base.pop("HEAL_CONFIG", None)
    return subprocess.run([sys.executable, "-c", HEAL, "policy", *args], cwd=root,
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("text", "said"), [
    ('[[windows]]\ndays = ["mon"]\nstart = 01:00:00\nend = 02:00:00\n',
     'heal.toml: windows[0].start = 01:00:00: must be a quoted string such as "08:00": '
     'write "01:00" (with the quotes)'),
    ("limits.max_files = true\n",
     "heal.toml: limits.max_files = true: must be a positive integer <= 100000"),
    ('[judges.llm]\nenabled = true\n', "heal.toml: judges.llm.enabled = true: reaches"),
    ('verify.checks = [{argv = "make test"}]\n',
     'heal.toml: verify.checks[0].argv = "make test": must be a list of strings'),
    ("[limits\n", "heal.toml: {file}: not valid TOML"),
])
def test_policy_messages_spell_values_as_toml_and_name_the_accepted_form(
        tmp_path: Path, text: str, said: str) -> None:
    root = _repo(tmp_path)
    (root / "heal.toml").write_text(text)
    done = _policy_cli(root, tmp_path / "home")
    assert done.returncode == 2, done
    assert said.format(file=root / "heal.toml") in done.stderr, done.stderr
    for python in ("datetime.", "True", "= '", "(file)"):
        assert python not in done.stderr, done.stderr


def test_relative_trust_repos_are_refused_naming_the_entry(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    operator = write_operator(tmp_path, '[trust]\nrepos = ["/srv/checkout", "*"]\n')
    done = _policy_cli(root, tmp_path / "home", HEAL_CONFIG=str(operator))
    assert done.returncode == 2, done
    assert ('trust.repos[1] = "*": must be an absolute path or glob (starting with /)'
            in done.stderr), done.stderr
    operator.write_text('[trust]\nrepos = ["/srv/checkout", "/home/ci/work/*"]\n')
    assert _policy_cli(root, tmp_path / "home", HEAL_CONFIG=str(operator)).returncode == 0


def test_heal_policy_shows_that_a_repository_cannot_waive_the_human_for_risky_fixes(
        tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "heal.toml").write_text("judges.human_for_risky = false\n")
    done = _policy_cli(root, tmp_path / "home", "--json")
    assert done.returncode == 0, done
    row = next(r for r in json.loads(done.stdout)["keys"]
               if r["key"] == "judges.human_for_risky")
    assert (row["value"], row["source"], row["requested"]) == (True, "operator", False)
    assert "only operator configuration may waive the human" in done.stderr
    # the operator may let repositories decide
    operator = write_operator(tmp_path, "[judges]\nhuman_for_risky = false\n")
    done = _policy_cli(root, tmp_path / "home", "--json", HEAL_CONFIG=str(operator))
    row = next(r for r in json.loads(done.stdout)["keys"]
               if r["key"] == "judges.human_for_risky")
    assert (row["value"], row["source"]) == (False, "file")
