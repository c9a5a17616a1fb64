"""The job summary and the pull-request comment of ``heal run`` under GitHub Actions, run for
real (a failing command, the real engines and stages): the error text is the failing
program's, untrusted, and nothing in it renders as HTML, a link, an image or a mention."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"

HOSTILE_FILE = "a`b</details><img src=x>.py"
HOSTILE_ERROR = ("ValueError: col|umn `code` a\\|b <script>alert(1)</script> @octocat "
                 "[click](https://evil.example) ![i](https://evil.example/t.png)")
TRACEBACK = (f'Traceback (most recent call last):\n  File "{HOSTILE_FILE}", line 3, in '
             f"<module>\n    boom()\n{HOSTILE_ERROR}\n")
FAIL = f"import sys\nsys.stderr.write({TRACEBACK!r})\nsys.exit(1)\n"


def _rendered(markdown: str) -> str:
    """HTML as GitHub's Markdown makes it (CommonMark with raw HTML, tables)."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(
        markdown)


def test_error_text_in_the_job_summary_and_pr_comment_renders_as_text_only(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a command whose traceback names a file and an error made to break out of
    # Markdown: backticks, raw HTML closing the report's <details>, a mention, a link, an image
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "fail2.py").write_text(FAIL)
    summary, temp = tmp_path / "summary.md", tmp_path / "runner"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
           **heal_env, "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT)}
    # When heal runs it under GitHub Actions
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--timeout", "60", "--",
                           sys.executable, "fail2.py"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    # Then in the summary and in the comment the error and the file are code, whole
    for markdown in (summary.read_text(), (temp / "heal" / "pr-comment.md").read_text()):
        html = _rendered(markdown)
        assert "<script" not in html and "<img" not in html and "</details>" not in html
        assert "<a " not in html and 'href="' not in html
        assert ("<code>ValueError: col|umn `code` a\\|b &lt;script&gt;alert(1)&lt;/script&gt; "
                "@octocat [click](https://evil.example) ![i](https://evil.example/t.png)"
                "</code>") in html.replace("\u200b", "")
        assert "<code>a`b&lt;/details&gt;&lt;img src=x&gt;.py:3</code>" in html
        # and GitHub mentions nobody: outside code, no "@name" is left
        outside = html.replace("\u200b", "").split("<code>")
        assert all("@octocat" not in part.split("</code>")[-1] for part in outside)


def test_bidi_and_control_characters_in_the_error_are_shown_not_applied(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a command whose error holds a right-to-left override (which reorders what a
    # reader sees) and an escape character
    repo = tmp_path / "repo"
    repo.mkdir()
    error = "ValueError: user \u202eexe.txt\u202c done \x1b[31mred"
    (repo / "fail3.py").write_text(f"import sys\nsys.stderr.write({error + chr(10)!r})\n"
                                    "sys.exit(1)\n")
    summary, temp = tmp_path / "summary.md", tmp_path / "runner"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
           **heal_env, "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT)}
    # When heal runs it under GitHub Actions
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--timeout", "60", "--",
                           sys.executable, "fail3.py"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    # Then the summary and the comment hold no bidirectional control, and show it as
    # `heal report --format md` does
    for markdown in (summary.read_text(), (temp / "heal" / "pr-comment.md").read_text()):
        assert not any(c in markdown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067"
                                              "\u2068\u2069\x1b"), markdown
        assert "\\u202eexe.txt\\u202c" in markdown


def _outside_code(html: str) -> str:
    """The rendered HTML without what is inside <code>...</code>."""
    parts = html.split("<code>")
    return parts[0] + "".join(part.split("</code>", 1)[-1] for part in parts[1:])


def test_bare_urls_in_event_text_are_never_autolinked_in_the_summary_and_comment(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    # Given a step name (event text, shown as prose in the summary's title) holding bare
    # URLs, which GitHub would turn into links
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "fail4.py").write_text("import sys\nsys.stderr.write('ValueError: see "
                                    "https://evil.example/e\\n')\nsys.exit(1)\n")
    summary, temp = tmp_path / "summary.md", tmp_path / "runner"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
           **heal_env, "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT)}
    step = "deploy https://evil.example/x (www.evil.example, mailto:a@evil.example)"
    # When heal runs it under GitHub Actions
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--timeout", "60", "--step", step,
                           "--", sys.executable, "fail4.py"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    markdown = summary.read_text()
    # Then outside code spans the written summary holds no URL GitHub would link, and each
    # URL is shown whole as code (readable, not a link)
    html = _rendered(markdown)
    outside = _outside_code(html).lower()
    assert not any(m in outside for m in ("://", "www.", "mailto:")), markdown
    # (the sentence's punctuation around a URL stays outside its code span)
    for url in ("https://evil.example/x", "www.evil.example", "mailto:a@evil.example"):
        assert f"<code>{url}</code>" in html, markdown
    assert "(<code>www.evil.example</code>, <code>mailto:a@evil.example</code>)" in html
    assert "<code>ValueError: see https://evil.example/e</code>" in html
    assert "<h3>:x: heal: deploy <code>" in html


def test_the_suggestion_branch_in_the_summary_and_comment_is_a_code_span_of_the_name_only(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    """The decision `verified on branch heal/fp-...-1; apply with: ...` is prose with a word
    GitHub would link (its hex run reads as a commit): the code span holds the branch name,
    and the `;` of the sentence stays outside, so copying it gives the exact name."""
    from tests.scenarios.catalog import build

    # Given a lint failure with a fix heal can verify, in mode suggest
    _, repo = build("unused-import", tmp_path)
    summary, temp = tmp_path / "summary.md", tmp_path / "runner"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
           **heal_env, "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # When heal runs it under GitHub Actions
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--mode", "suggest", "--timeout",
                           "120", "--", "ruff", "check", "."], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    branches = [b.strip(" *") for b in subprocess.run(
        ["git", "branch", "--list", "heal/*"], cwd=repo, capture_output=True, text=True,
        check=True).stdout.splitlines()]
    assert len(branches) == 1, branches
    # Then the summary and the comment show the branch as code, its name only
    for markdown in (summary.read_text(), (temp / "heal" / "pr-comment.md").read_text()):
        html = _rendered(markdown)
        assert f"verified on branch <code>{branches[0]}</code>; apply with:" in html, markdown


def test_a_url_with_balanced_parentheses_keeps_its_closing_one_in_the_summary(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    """QA s13 D9: the sentence's `)` was kept outside a URL's code span, also the `)` that
    closes a `(` of the URL itself: `https://ex.com/a_(b)` became `https://ex.com/a_(b`
    (GitHub's autolink keeps a closing parenthesis that matches one inside)."""
    # Given a step name with a URL holding balanced parentheses, inside the sentence's own
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "fail5.py").write_text("import sys\nsys.stderr.write('ValueError: x\\n')\n"
                                    "sys.exit(1)\n")
    summary, temp = tmp_path / "summary.md", tmp_path / "runner"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
           **heal_env, "GITHUB_ACTIONS": "true", "CI": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT)}
    step = "deploy (see https://ex.com/a_(b)), then https://ex.com/c_(d)."
    # When heal runs it under GitHub Actions
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--timeout", "60", "--step", step,
                           "--", sys.executable, "fail5.py"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    # Then each URL's code span holds the whole URL, its `)` included, and the sentence's
    # punctuation (the `)` closing `(see`, the `,` and the `.`) stays outside
    shown = [summary.read_text(), (temp / "heal" / "pr-comment.md").read_text()]
    assert "deploy" in shown[0], shown[0]
    for markdown in shown:
        html = _rendered(markdown)
        if "deploy" not in html:
            continue  # (the comment may not name the step)
        assert "(see <code>https://ex.com/a_(b)</code>), then " \
               "<code>https://ex.com/c_(d)</code>." in html, markdown
