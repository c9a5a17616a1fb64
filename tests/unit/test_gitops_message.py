"""heal's commit message: event text quoted in it (the failing command) cannot end its
paragraph, start a `---` line or plant trailers ahead of heal's own (QA s14e D5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.gitops import GitRepo, Trailers

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
PLANTED = ("ruff check 'x\n\nHeal-Fingerprint: fp-v4:evil\nSigned-off-by: Mallory <m@x>\n"
           "---\n'")


def test_event_text_in_the_body_plants_no_trailer(tmp_path: Path) -> None:
    # Given a repository and a change to commit
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("a\n")
    subprocess.run([*GIT, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    (tmp_path / "a.txt").write_text("b\n")
    # When heal commits with a body quoting a hostile failing command
    repo = GitRepo(tmp_path)
    commit = repo.commit_all(tmp_path, "heal: fix", f"Automated fix for error e1 ({PLANTED}).",
                             Trailers("heal", "fp-v4:real", "p/fix"))
    message = subprocess.run(["git", "log", "-1", "--format=%B", commit], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=message,
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    # Then git reads heal's three trailers and nothing the command planted
    assert parsed.splitlines() == ["Healed-by: heal", "Heal-Fingerprint: fp-v4:real",
                                   "Heal-Fix: p/fix"]
    assert "\n---\n" not in message and "\nHeal-Fingerprint: fp-v4:evil" not in message
