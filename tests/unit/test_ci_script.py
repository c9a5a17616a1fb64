"""`.ci/run` runs exactly the README's test command, and installs chromium only best effort."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    command = readme[readme.index("# install and run the tests") + 1]
    script = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip()]
    assert script[-1] == command


def test_chromium_install_never_fails_ci() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y -qq chromium" in script
    install = next(ln for ln in script.splitlines() if "apt-get install" in ln)
    # a failing install falls through to the skip instead of stopping `set -e`
    following = script[script.index(install):].splitlines()[1:3]
    assert any(ln.strip().startswith("|| echo") for ln in following)
