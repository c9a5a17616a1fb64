"""What a lesson covers, said when it is taught (the real CLI in subprocesses, the session's
real engines). QA s16c items 9, 10, 11: a taught command that hard-codes a value keeps it
literal in its rule (the seed still answers for every other value); a lesson for a logic bug
with a MODERATE fix says it is refused and the seed's answer is served instead; ``heal learn``
takes the short fingerprint ``heal run`` printed; a category given again is stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration._repos import git
from tests.integration.test_learning_teach_e2e import letters

ROOT = Path(__file__).resolve().parents[2]
HEAL = str(Path(sys.executable).with_name("heal"))

NODE = """node:internal/modules/cjs/loader:1210
  throw err;
  ^

Error: Cannot find module '{module}'
Require stack:
- {repo}/app.js
    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15)
    at Object.<anonymous> ({repo}/app.js:1:1)
{{
  code: 'MODULE_NOT_FOUND',
  requireStack: [ '{repo}/app.js' ]
}}

Node.js v20.20.2
"""

PYTHON = """Traceback (most recent call last):
  File "{repo}/app.py", line 1, in <module>
    import {module}
ModuleNotFoundError: No module named '{module}'
"""

#: node:test's TAP report of a test four describe() blocks deep (its YAML block indented 18)
NESTED_TAP = """TAP version 13
# Subtest: api
    # Subtest: users
        # Subtest: create
            # Subtest: {token}
                # Subtest: rejects empty
                not ok 1 - rejects empty
                  ---
                  duration_ms: 3.007179
                  location: '{repo}/test/a.test.js:2:93'
                  failureType: 'testCodeFailure'
                  error: |-
                    Expected values to be strictly equal:

                    1 !== 2

                  code: 'ERR_ASSERTION'
                  name: 'AssertionError'
                  expected: 2
                  actual: 1
                  operator: 'strictEqual'
                  ...
                1..1
            not ok 1 - {token}
              ---
              type: 'suite'
              failureType: 'subtestsFailed'
              error: '1 subtest failed'
              code: 'ERR_TEST_FAILURE'
              ...
# tests 1
# fail 1
"""

RUSTC = """   Compiling {token} v0.1.0 ({repo})
error[E0425]: cannot find value `{name}` in this scope
 --> src/main.rs:3:20
  |
3 |     println!("{{}}", {name});
  |                    ^^^^ help: a local variable with a similar name exists: `total`

For more information about this error, try `rustc --explain E0425`.
error: could not compile `{token}` (bin "{token}") due to 1 previous error
"""


@pytest.fixture
def env(heal_env: dict[str, str], own_database: str) -> dict[str, str]:
    return {**os.environ, **heal_env, "HEAL_DATABASE_URL": own_database,
            "PYTHONPATH": str(ROOT), "HEAL_PROGRESS": "0"}


def heal(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEAL, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def failing(env: dict[str, str], tmp_path: Path, text: str) -> tuple[Path, str]:
    """A repository whose command prints ``text`` and fails, run through ``heal run``; the
    repository and the short fingerprint heal printed."""
    repo = tmp_path / f"repo-{letters()}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "fail.py").write_text(
        f"import sys\nsys.stderr.write({text.format(repo=repo)!r})\nsys.exit(1)\n")
    git(repo, "add", "fail.py")
    git(repo, "commit", "-q", "-m", "fail")
    done = heal(env, repo, "run", "--timeout", "120", "--mode", "suggest", "--",
                sys.executable, "fail.py")
    assert done.returncode == 1, done.stderr
    found = re.search(r"\[fingerprint ([0-9a-f]{6,})", done.stderr)
    assert found, done.stderr
    return repo, found.group(1)


def learn(env: dict[str, str], repo: Path, *args: str) -> dict[str, Any]:
    done = heal(env, repo, "learn", *args, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def diagnose(env: dict[str, str], tmp_path: Path, text: str) -> dict[str, Any]:
    file = tmp_path / f"{letters()}.txt"
    file.write_text(text)
    done = heal(env, tmp_path, "diagnose", "--json", "--no-semantic", str(file))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_taught_command_keeps_the_value_it_names_literal_in_its_rule(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a missing module taught with a command that installs that very module (item 10)
    token = letters()
    repo, short = failing(env, tmp_path, NODE.replace("{module}", f"pad-{token}"))
    done = heal(env, repo, "learn", short, "--command", f"npm install pad-{token}")
    assert done.returncode == 0, done.stderr
    # Then the rule keeps the module literal, and the output says so
    assert f"module[ \\t]++'pad\\-{token}'" in done.stdout, done.stdout
    assert f"kept 'pad-{token}' literal in the rule" in done.stdout, done.stdout
    # and another repository's missing module still gets the seed's answer, not the lesson
    other = tmp_path / "elsewhere"
    other.mkdir()
    answer = diagnose(env, tmp_path, NODE.format(module=f"lodash{token}", repo=other))
    assert answer["match"]["pattern_id"] == "node.modules_missing", answer
    # while the module the lesson names still gets the lesson
    again = diagnose(env, tmp_path, NODE.format(module=f"pad-{token}", repo=other))
    assert again["match"]["pattern_id"].startswith("learned."), again


def test_a_taught_command_naming_part_of_the_value_keeps_the_value_literal(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a missing subpath of a package, taught with a command installing the package (QA
    # s16d R5): the command names a leading part of the error's value
    token = letters()
    repo, short = failing(env, tmp_path, NODE.replace("{module}", f"dom-{token}/client"))
    taught = learn(env, repo, short, "--command", f"npm install dom-{token}@2")
    # Then the rule keeps the error's value literal, and says so
    assert f"'dom\\-{token}/client'" in taught["regex"], taught
    assert any(f"kept 'dom-{token}/client' literal" in n for n in taught["notes"]), taught
    # and another missing module, and the project's own file, keep the seeds' answers
    other = tmp_path / "elsewhere"
    other.mkdir()
    answer = diagnose(env, tmp_path, NODE.format(module=f"lodash{token}", repo=other))
    assert answer["match"]["pattern_id"] == "node.modules_missing", answer
    local = diagnose(env, tmp_path, NODE.format(module="./lib/helpers", repo=other))
    assert local["match"]["pattern_id"] == "node.local_module_missing", local


def test_a_taught_command_naming_another_value_keeps_the_value_literal_and_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a missing Python module taught with a command installing a distribution of
    # another name (as beautifulsoup4 provides bs4): nothing relates the two
    token = letters()
    repo, short = failing(env, tmp_path, PYTHON.replace("{module}", f"bs{token}"))
    taught = learn(env, repo, short, "--command", f"pip install --upgrade soup{token}x")
    # Then the rule still keeps the module literal, and the output says why and how to widen it
    assert f"'bs{token}'" in taught["regex"], taught
    note = next(n for n in taught["notes"] if f"kept 'bs{token}' literal" in n)
    assert f"the fix names 'soup{token}x'" in note and "--regex" in note, taught
    # and another missing module is not answered with that command
    other = tmp_path / "elsewhere"
    other.mkdir()
    answer = diagnose(env, tmp_path, PYTHON.format(module=f"req{token}", repo=other))
    assert not answer["match"]["pattern_id"].startswith("learned."), answer


def test_a_command_naming_no_value_still_covers_every_value(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a missing module taught with a command that names no value (`npm ci`)
    token = letters()
    repo, short = failing(env, tmp_path, NODE.replace("{module}", f"pad-{token}"))
    taught = learn(env, repo, short, "--command", "npm ci")
    # Then the rule masks the module: the lesson is for every missing module
    assert "module[ \\t]++'(?>" in taught["regex"], taught
    assert not any("literal" in n for n in taught["notes"]), taught


def test_a_nested_node_test_failure_is_a_logic_bug_at_any_depth(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given node:test's TAP report of an assertion four describe() blocks deep (QA s16d R6)
    token = letters()
    repo, short = failing(env, tmp_path, NESTED_TAP.replace("{token}", token))
    # When a MODERATE command is taught for it
    taught = learn(env, repo, short, "--command", "touch fixed.js")
    # Then the lesson says the error names a logic bug and the fix is refused
    assert any("names a logic bug (AssertionError)" in n for n in taught["notes"]), taught
    # and heal diagnose serves no SAFE/MODERATE fix for it
    answer = diagnose(env, tmp_path, NESTED_TAP.format(token=token, repo=repo))
    fix = answer.get("fix")
    assert not (isinstance(fix, dict) and fix.get("category") in ("SAFE", "MODERATE")), answer


def test_a_logic_bug_lesson_says_so_and_the_seed_still_answers(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a compile error the seed escalates, and its short fingerprint as heal run printed it
    token = letters()
    text = RUSTC.replace("{token}", token).replace("{name}", "totl")
    repo, short = failing(env, tmp_path, text)
    # When a person teaches a MODERATE command for it by that fingerprint (item 11c) with a
    # rule of their own (item 11b)
    done = heal(env, repo, "learn", short, "--command", "touch fixed.rs",
                "--regex", f"could not compile `{token}`")
    # Then the fingerprint is accepted, and the output says the fix will be refused
    assert done.returncode == 0, done.stderr
    assert "names a logic bug (compile error)" in done.stdout, done.stdout
    assert "--category RISKY" in done.stdout, done.stdout
    # and the lookup falls back to the seed's escalation, not "no known fix"
    answer = diagnose(env, tmp_path, text.format(repo=repo))
    assert answer["match"]["pattern_id"] == "build.compile_error", answer
    assert answer["fix"]["kind"] == "escalate", answer


def test_a_lesson_by_fingerprint_only_that_a_seed_rule_shadows_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given an error a seed rule matches, taught with a rule that cannot be derived
    token = letters()
    text = f"bash: line 1: tool{token}: command not found\n"
    repo, short = failing(env, tmp_path, text)
    taught = learn(env, repo, short, "--escalate", f"ask {token}")
    # (bash's headline is reassembled, and its message alone is only a placeholder: no rule
    # derived) Then it says the seed rule wins
    assert taught["regex"] is None, taught
    assert any("seed rule of proc.command_not_found" in n and "--regex" in n
               for n in taught["notes"]), taught


def test_a_lesson_gets_a_rule_when_its_headline_respells_the_raw_text(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given errors whose normalized headline is not their raw spelling: a log line's level
    # ("Error:" reads "ERROR:") and rustc's code ("error[E0425]:" reads "E0425:")
    token = letters()
    rustc = RUSTC.replace("{token}", token).replace("{name}", f"v{token}")
    for text, shown in ((f"Error: cache shard {token} is missing from the store\n",
                         f"cache[ \\t]++shard[ \\t]++{token}"),
                        (rustc, f"value[ \\t]++`v{token}`")):
        repo, short = failing(env, tmp_path, text)
        taught = learn(env, repo, short, "--escalate", f"ask about {token}")
        # Then the rule is derived from the message, matches the error it was taught from,
        # and the lesson answers it (a rule outranks the seeds', fingerprints do not)
        assert taught["regex"] is not None and shown in taught["regex"], taught
        assert not any("does not match the raw text" in n for n in taught["notes"]), taught
        answer = diagnose(env, tmp_path, text.format(repo=repo))
        assert answer["match"]["pattern_id"] == taught["pattern_id"], answer


def test_a_lesson_that_kept_its_value_does_not_answer_another_value_by_fingerprint(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given an error naming a value the fingerprint masks (a hex id), taught with a command
    # naming that value
    token = letters()
    first, second = "3f9a2c1b7d44", "77aa21bc9e01"
    template = "Error: cache shard {shard} of " + token + " is missing from the store\n"
    repo, short = failing(env, tmp_path, template.format(shard=first))
    taught = learn(env, repo, short, "--command", f"echo rebuilt {first}")
    assert taught["regex"] is not None and first in taught["regex"], taught
    # When another shard's error arrives: one fine fingerprint with the first
    answer = diagnose(env, tmp_path, template.format(shard=second))
    mine = diagnose(env, tmp_path, template.format(shard=first))
    assert answer["fingerprint"]["fine"] == mine["fingerprint"]["fine"], (answer, mine)
    # Then the lesson answers its own shard only: the rule that kept the value decides,
    # not the fingerprint mapping of the lesson
    assert mine["match"]["pattern_id"] == taught["pattern_id"], mine
    assert (answer.get("match") or {}).get("pattern_id") != taught["pattern_id"], answer


def test_a_rule_from_a_short_message_keeps_its_level_and_answers_no_unrelated_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given short log lines whose level is respelled in the headline ("error:" reads
    # "ERROR:"), so that their message alone is one common word or a lone code (QA s17b #1)
    unrelated = [
        "Traceback (most recent call last):\n  File \"/x/app.py\", line 3, in <module>\n"
        "RuntimeError: database migration failed\n",
        "Error: Command failed with exit code 1: npm run build\n",
        "ERROR: Job failed: exit code 1\n",
        "RuntimeError: worker exited with code 1\n",
        "Error: Process completed with exit code 137.\n",
        "npm error code 127\n",
    ]
    for text, fix in (("error: failed\n", ("--escalate", "ask the db team")),
                      ("npm error code 1\n", ("--command", "npm ci"))):
        repo, short = failing(env, tmp_path, text)
        taught = learn(env, repo, short, *fix)
        # Then its rule keeps the level (any case) and whole words, so it still answers
        # its own error
        assert taught["regex"] is not None and "(?i:ERROR)" in taught["regex"], taught
        mine = diagnose(env, tmp_path, text)
        assert mine["match"]["pattern_id"] == taught["pattern_id"], mine
        # but no unrelated error that merely holds the word or the code
        for other in unrelated:
            answer = diagnose(env, tmp_path, other)
            assert (answer.get("match") or {}).get("pattern_id") != taught["pattern_id"], (
                other, taught["regex"], answer)


def test_a_lesson_whose_rule_kept_no_value_answers_its_respellings_by_fingerprint(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given a log line taught with a rule derived from its headline, keeping no value
    token = letters()
    message = f"migration of table {token} locked by pid 4242"
    repo, short = failing(env, tmp_path, f"ERROR: {message}\n")
    taught = learn(env, repo, short, "--escalate", "ask the db team")
    assert taught["regex"] is not None, taught
    mine = diagnose(env, tmp_path, f"ERROR: {message}\n")
    # When the same error arrives respelled (another case of its level, as JSON): one fine
    # fingerprint, which the rule's spelling does not match (QA s17b #12)
    for variant in (f"error: {message}\n", json.dumps({"level": "error", "msg": message}) + "\n"):
        answer = diagnose(env, tmp_path, variant)
        assert answer["fingerprint"]["fine"] == mine["fingerprint"]["fine"], (answer, mine)
        # Then the lesson still answers it at tier 1, by its fingerprint
        assert answer["match"]["pattern_id"] == taught["pattern_id"], answer
        assert answer["match"]["tier"] == 1, answer


def test_a_category_given_again_is_stored_and_one_not_given_is_kept(
    env: dict[str, str], tmp_path: Path
) -> None:
    token = letters()
    repo, short = failing(env, tmp_path, NODE.replace("{module}", f"pad-{token}"))
    first = learn(env, repo, short, "--command", "npm ci")
    assert first["category"] == "MODERATE"
    # When the same fix is taught again with --category RISKY (item 9)
    again = learn(env, repo, short, "--command", "npm ci", "--category", "RISKY")
    # Then it is stored RISKY: the lesson, the export and explain agree
    assert (again["fix_id"], again["category"]) == (first["fix_id"], "RISKY")
    done = heal(env, repo, "export", "--format", "json")
    assert done.returncode == 0, done.stderr
    exported = json.dumps(json.loads(done.stdout))
    pattern = next(p for p in json.loads(done.stdout)["patterns"]
                   if p["id"] == first["pattern_id"])
    fix = next(f for f in pattern["fixes"] if f["id"] == first["fix_id"])
    assert (pattern["category"], fix["category"]) == ("RISKY", "RISKY"), exported
    # and a lesson without --category keeps it, and says so
    kept = learn(env, repo, short, "--command", "npm ci")
    assert kept["category"] == "RISKY", kept
    assert any("kept the fix's category RISKY" in n for n in kept["notes"]), kept
