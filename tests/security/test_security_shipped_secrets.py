"""A repository must not ship heal's secrets. With HEAL_HOME unset the state is
``<repo>/.heal``, so a repository could commit ``.heal/keys/signing.key`` (a key its author
knows: forged attestations and seals), ``.heal/serve/approver.token`` (a token its author
chose: approvals) or ``.heal/audit.key`` (whoever knows it rewrites the audit chain). Such
files are refused like a shipped operator configuration: tracked by git, another user's or
writable by others; a serve token must also be long and varied. Through the CLI, as an
operator runs it (the audit key through the audit log's writer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.guardrails.audit import AuditError, AuditLog

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
KNOWN_KEY = "attacker-known-key-0123456789abcdef0123456789\n"
GOOD_TOKEN = "Zq3-w8Rt_u5Yp1Lk9Vb7Nm2Xc4Hs6Jd0\n"


def _env(heal_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HEAL_HOME", "HEAL_SIGNING_KEY", "HEAL_SIGNING_KEY_PREVIOUS",
                        "HEAL_SERVE_TOKEN", "HEAL_SERVE_VIEWER_TOKEN", "HEAL_CONFIG")}
    env.update({k: v for k, v in heal_env.items() if k != "HEAL_HOME"}, **extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _heal(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _evil_repo(tmp: Path, files: dict[str, str]) -> Path:
    root = tmp / "evil"
    root.mkdir()
    git(root, "init", "-q", ".")
    git(root, "config", "user.email", "evil@example.com")
    git(root, "config", "user.name", "evil")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
    git(root, "add", "-f", ".")
    git(root, "commit", "-q", "-m", "ship heal's secrets")
    return root


def test_a_repository_cannot_ship_the_signing_key(tmp_path: Path,
                                                  heal_env: dict[str, str]) -> None:
    # Given a repository committing .heal/keys/signing.key, and HEAL_HOME unset
    root = _evil_repo(tmp_path, {".heal/keys/signing.key": KNOWN_KEY})
    env = _env(heal_env)
    # When heal needs the key: it is refused, saying why and what to do
    done = _heal(root, env, "keys", "show")
    assert done.returncode == 2, done
    assert "signing key" in done.stderr and "is tracked by git" in done.stderr
    assert "delete the file so heal makes a new one" in done.stderr
    assert "Traceback" not in done.stderr
    # ... attesting a command with it fails the same way (nothing is signed with that key)
    done = _heal(root, env, "run", "--no-wait", "--", "false")
    assert "is tracked by git" in done.stderr, done
    # Once untracked and deleted as told, heal makes a key of its own
    git(root, "rm", "-q", "--cached", ".heal/keys/signing.key")
    (root / ".heal/keys/signing.key").unlink()
    done = _heal(root, env, "keys", "show")
    assert done.returncode == 0 and "signing key from" in done.stdout, done
    # A key file other users may write is refused too (not merely tightened)
    home = tmp_path / "home"
    assert _heal(root, {**env, "HEAL_HOME": str(home)}, "keys", "show").returncode == 0
    (home / "keys/signing.key").chmod(0o666)
    done = _heal(root, {**env, "HEAL_HOME": str(home)}, "keys", "show")
    assert done.returncode == 2 and "writable by other users" in done.stderr, done


def test_a_repository_cannot_ship_the_approver_token(tmp_path: Path,
                                                     heal_env: dict[str, str]) -> None:
    # Given a repository committing a (long enough) approver token, and HEAL_HOME unset
    root = _evil_repo(tmp_path, {".heal/serve/approver.token": GOOD_TOKEN})
    # When heal serve starts: refused before it listens, saying why and what to do
    done = _heal(root, _env(heal_env), "serve", "--port", "0")
    assert done.returncode == 2, done
    assert "heal serve token" in done.stderr and "is tracked by git" in done.stderr
    assert "HEAL_SERVE_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_a_short_or_uniform_serve_token_is_refused(tmp_path: Path,
                                                   heal_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    (home / "serve").mkdir(parents=True, mode=0o700)
    token = home / "serve/approver.token"
    env = _env(heal_env, HEAL_HOME=str(home))
    for text, said in (("a\n", "is 1 characters; use at least 16"),
                       ("a" * 40 + "\n", "uses 1 different characters")):
        token.write_text(text)
        token.chmod(0o600)
        done = _heal(tmp_path, env, "serve", "--port", "0")
        assert done.returncode == 2, done
        assert said in done.stderr and str(token) in done.stderr
        assert "delete the file so heal serve makes a new one" in done.stderr
    # the environment's token gets the same rule
    token.write_text(GOOD_TOKEN)
    done = _heal(tmp_path, {**env, "HEAL_SERVE_TOKEN": "b" * 32}, "serve", "--port", "0")
    assert done.returncode == 2 and "HEAL_SERVE_TOKEN uses 1 different characters" in \
        done.stderr, done


def test_a_repository_cannot_ship_the_audit_key(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a repository committing .heal/audit.key, and heal's state in that .heal
    root = _evil_repo(tmp_path, {".heal/audit.key": KNOWN_KEY})
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    log = AuditLog(Settings(None, None, root / ".heal", "p"), anchored=False)
    # When heal audits a decision: refused (heal does not act unaudited), saying what to do
    with pytest.raises(AuditError, match="audit key .* is tracked by git: .*delete the file"):
        log.append("verdict", "e1", {"decision": "apply"})
    # Once untracked and deleted as told, heal makes its own key and audits
    git(root, "rm", "-q", "--cached", ".heal/audit.key")
    (root / ".heal/audit.key").unlink()
    assert log.append("verdict", "e1", {"decision": "apply"})["seq"] == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the checkout to another user")
def test_a_key_in_a_checkout_git_will_not_read_is_refused_not_trusted(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """Re-verification N5: git refuses a repository another user owns ("dubious ownership"),
    and that failure read as "not tracked", so a committed key was accepted."""
    # Given a checkout another user owns, committing a key, with HEAL_HOME set inside it
    root = _evil_repo(tmp_path, {".heal/keys/signing.key": KNOWN_KEY})
    for folder, _, _ in os.walk(root):
        os.chown(folder, 65534, 65534)  # (the folders only: the key file stays heal's user's)
    env = _env(heal_env, HEAL_HOME=str(root / ".heal"))
    # When heal needs the key, it is refused: git would not say whether it is tracked
    done = _heal(tmp_path, env, "keys", "show")
    assert done.returncode == 2, done
    assert "another user owns" in done.stderr and "safe.directory" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_audit_verify_refuses_a_shipped_audit_key_beside_a_forged_log(
        tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """audit verify read the audit.key beside the log without the writer's private-file
    check: a repository shipping .heal/audit.key and a log it sealed with that key got
    "chain intact"."""
    # Given a log sealed with a key the repository's author knows...
    monkeypatch.setenv("HEAL_AUDIT_KEY", KNOWN_KEY.strip())
    forger = tmp_path / "forger"
    AuditLog(Settings(None, None, forger, "p"), anchored=False).append(
        "verdict", "e1", {"decision": "apply", "by": "a human, honestly"})
    monkeypatch.delenv("HEAL_AUDIT_KEY")
    # ... committed with that key as .heal/audit.key, and HEAL_HOME unset
    root = _evil_repo(tmp_path, {".heal/audit.key": KNOWN_KEY,
                                 ".heal/audit.jsonl": (forger / "audit.jsonl").read_text()})
    env = {k: v for k, v in _env(heal_env).items() if k != "HEAL_AUDIT_KEY"}
    # When the operator verifies the audit log: the key is refused (exit 2), saying what to do
    done = _heal(root, env, "audit", "verify", "--file-only")
    assert done.returncode == 2, done
    assert f"audit key {root / '.heal/audit.key'} is tracked by git" in done.stderr
    assert "git rm --cached" in done.stderr and "HEAL_AUDIT_KEY" in done.stderr
    assert "chain intact" not in done.stdout and "Traceback" not in done.stderr
    # The same key and log outside git, but another user's: refused too (a key other users
    # may write is made 0600 by every heal command first: secure_home)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "audit.jsonl").write_text((forger / "audit.jsonl").read_text())
    (home / "audit.key").write_text(KNOWN_KEY)
    (home / "audit.key").chmod(0o600)
    if os.geteuid() == 0:
        os.chown(home / "audit.key", 65534, 65534)
        done = _heal(tmp_path, {**env, "HEAL_HOME": str(home)}, "audit", "verify",
                     "--file-only")
        assert done.returncode == 2 and "belongs to uid 65534" in done.stderr, done
        assert "chown it" in done.stderr and "chain intact" not in done.stdout
        os.chown(home / "audit.key", 0, 0)
    # ... and once the operator's own (0600, untracked), it is used: the chain checks out
    done = _heal(tmp_path, {**env, "HEAL_HOME": str(home)}, "audit", "verify", "--file-only")
    assert done.returncode == 0 and "chain intact" in done.stdout, done


def _example_secrets() -> dict[str, str]:
    """Every value of deploy/k8s/secret.example.yaml's Secrets, by key."""
    import yaml

    docs = yaml.safe_load_all((ROOT / "deploy/k8s/secret.example.yaml").read_text())
    return {key: str(value) for doc in docs if doc
            for key, value in (doc.get("stringData") or {}).items()}


def test_the_example_secrets_placeholders_are_refused_not_used(tmp_path: Path,
                                                               heal_env: dict[str, str]) -> None:
    """deploy/k8s/secret.example.yaml deployed unchanged: its CHANGE_ME values are long and
    varied enough for the strength rules, so heal served with a token and keyed its
    signatures and audit chain with a secret anyone who read the example knows. Every one
    is refused (exit 2) before any work, saying so, the value never printed."""
    example = _example_secrets()
    env = _env(heal_env, HEAL_HOME=str(tmp_path / "home"))
    runs = {"HEAL_SERVE_TOKEN": ("serve", "--port", "0"),
            "HEAL_SERVE_VIEWER_TOKEN": ("serve", "--port", "0"),
            "HEAL_SIGNING_KEY": ("keys", "show"),
            "HEAL_AUDIT_KEY": ("status", "--json")}
    values = {**example, "HEAL_SERVE_VIEWER_TOKEN": example["token"]}
    for variable, args in runs.items():
        done = _heal(tmp_path, {**env, variable: values[variable]}, *args)
        assert done.returncode == 2, (variable, done)
        assert f"{variable} still holds the example's CHANGE_ME placeholder" in done.stderr, \
            (variable, done.stderr)
        assert values[variable] not in done.stderr + done.stdout
    # a real secret in its place is taken
    done = _heal(tmp_path, {**env, "HEAL_SIGNING_KEY": "9f" * 32}, "keys", "show")
    assert done.returncode == 0, done
