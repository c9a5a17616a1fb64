"""producers/learning.py: what `heal run` tells the execution guard and the precedent
learner, with in-memory fakes (the real engines run in tests/integration/test_learning_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.events import ErrorEvent, Repo, Source, Workflow
from pipeline.fingerprint import fingerprint_text
from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from pipeline.lifecycle.precedent import StepFailure
from pipeline.model import Category, Mode
from pipeline.policy import Policy
from producers.learning import StepLearning, learning_workflow

TEXT = ('Traceback (most recent call last):\n  File "/repo/app.py", line 3, in <module>\n'
        '    load()\nSettingsDriftError: answer must be 42\n')


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def exists(self, key: str) -> int:
        return int(key in self.data)

    def set(self, key: str, value: str, ex: int | None = None) -> bool:
        self.data[key] = value
        return True

    def delete(self, key: str) -> int:
        return int(self.data.pop(key, None) is not None)


class FakeGuard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool, str]] = []
        self.after = WorkflowState.RUNNING

    def on_step_result(self, workflow: str, step: str, ok: bool, kind: str = "",
                       event_id: str = "") -> tuple[WorkflowState, WorkflowState, str]:
        self.calls.append((workflow, step, ok, kind))
        return WorkflowState.RUNNING, self.after, "" if self.after is WorkflowState.RUNNING \
            else "3 consecutive failures"


class MemoryStore:
    def __init__(self) -> None:
        self.failures: dict[tuple[str, str, str], StepFailure] = {}
        self.drafts: list[dict[str, Any]] = []

    def remember_failure(self, f: StepFailure) -> None:
        self.failures[(f.workflow, f.step, f.fingerprint)] = f

    def failures_for_step(self, workflow: str, step: str) -> list[StepFailure]:
        return [f for k, f in self.failures.items() if k[:2] == (workflow, step)]

    def forget_failure(self, f: StepFailure) -> None:
        self.failures.pop((f.workflow, f.step, f.fingerprint), None)

    def save_draft(self, draft: dict[str, Any]) -> bool:
        self.drafts.append(draft)
        return True


class FakeDb:
    closed = 0

    def close(self) -> None:
        FakeDb.closed += 1


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.client = FakeRedis()
        self.guard = FakeGuard()
        self.store = MemoryStore()
        self.opened: list[bool] = []
        self.db_error: Exception | None = None
        self.db_running = True
        settings = Settings(None, None, tmp_path, "t")
        self.learning = StepLearning(self.client, settings, open_db=self.open_db,
                                     store=lambda db: self.store,
                                     guard=lambda c, s: cast(ExecutionGuard, self.guard))

    def open_db(self, settings: Settings, start: bool) -> Any:
        self.opened.append(start)
        if self.db_error is not None:
            raise self.db_error
        return FakeDb() if start or self.db_running else None


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    harness = Harness(tmp_path)
    # the learner diffs the two commits with git; a fake diff keeps this a unit test (given
    # to the learner heal run builds, not patched into its defaults: that also holds when
    # mutmut wraps the constructor)
    import producers.learning
    from pipeline.lifecycle.precedent import PrecedentLearner, PrecedentStore

    def fake_diff(repo: str, a: str, b: str) -> str:
        return f"--- a/app.py\n+++ b/app.py\n@@ {a}..{b}\n"

    def learner(store: PrecedentStore) -> PrecedentLearner:
        return PrecedentLearner(store, fake_diff)

    monkeypatch.setattr(producers.learning, "PrecedentLearner", learner)
    return harness


def event(commit: str = "c1", workflow: str = "wf") -> ErrorEvent:
    return ErrorEvent(id="run-1", text=TEXT, source=Source(kind="subprocess"),
                      workflow=Workflow(id=workflow, step="import-app"),
                      repo=Repo(path="/repo", commit=commit, branch="main"),
                      command=("python", "-c", "import app"), exit_code=1)


def test_a_failure_is_remembered_with_the_stages_fingerprint(h: Harness) -> None:
    lines = h.learning.failed(event(), "step-1")
    assert lines == []
    fp = fingerprint_text(TEXT, repo="/repo")  # what the fingerprint stage computes
    (failure,) = h.store.failures.values()
    assert failure == StepFailure("wf", "import-app", fp.fine, "/repo", "c1")
    assert h.guard.calls == [("wf", "import-app", False, fp.coarse)]
    assert h.opened == [False]  # a failure never starts an engine just to be remembered
    assert h.client.data == {"t:learning:pending:step-1": "1"}


def test_a_failure_outside_git_touches_redis_only(h: Harness) -> None:
    assert h.learning.failed(event(commit=""), "step-1") == []
    assert h.opened == [] and h.store.failures == {} and len(h.guard.calls) == 1


def test_postgresql_not_running_is_said_in_one_line(h: Harness) -> None:
    h.db_running = False
    (line,) = h.learning.failed(event(), "step-1")
    assert "not remembered for learning" in line
    assert "embedded PostgreSQL is not running" in line and "heal engines start" in line
    assert len(h.guard.calls) == 1 and h.client.data == {}


def test_a_plain_success_never_opens_postgresql(h: Harness) -> None:
    wf, repo = Workflow(id="wf", step="import-app"), Repo("/repo", "c2")
    assert h.learning.succeeded(wf, repo, "step-1", None) == []
    assert h.learning.succeeded(wf, repo, "step-1", "run-1") == []  # resolved, not remembered
    assert h.opened == []
    assert [c[2] for c in h.guard.calls] == [True, True]


def test_a_fix_after_a_remembered_failure_is_learned(h: Harness) -> None:
    h.learning.failed(event(), "step-1")
    (line,) = h.learning.succeeded(Workflow(id="wf", step="import-app"), Repo("/repo", "c2"),
                                   "step-1", "run-1")
    assert line.startswith("learned DRAFT fix precedent-") and "c1..c2" in line
    (draft,) = h.store.drafts
    assert (draft["state"], draft["category"], draft["kind"]) == ("DRAFT", "RISKY", "diff")
    assert draft["rendered"]["diff"].endswith("@@ c1..c2\n")
    assert h.opened == [False, True] and h.client.data == {} and h.store.failures == {}


def test_heal_fixing_it_itself_forgets_instead_of_learning(h: Harness) -> None:
    h.learning.failed(event(), "step-1")
    lines = h.learning.succeeded(Workflow(id="wf", step="import-app"), Repo("/repo", "c2"),
                                 "step-1", "run-1", healed=True)
    assert lines == [] and h.store.drafts == [] and h.store.failures == {}
    assert h.client.data == {}


def test_engine_problems_become_one_line(h: Harness) -> None:
    h.db_error = DatabaseUnavailable("connection refused")
    (line,) = h.learning.failed(event(), "step-1")
    assert line == ("could not update the execution state or learn from this run "
                    "(connection refused)")
    h.db_error = RuntimeError("boom")
    (line,) = h.learning.failed(event(), "step-1")
    assert line == "learning from this run failed (RuntimeError: boom)"


def test_a_state_change_is_said(h: Harness) -> None:
    h.guard.after = WorkflowState.DEGRADED
    (line, *_) = h.learning.failed(event(commit=""), "step-1")
    assert line == "workflow wf is now DEGRADED (3 consecutive failures)"


def test_learning_paused_keeps_the_failure_for_later(h: Harness) -> None:
    h.learning.failed(event(), "step-1")
    h.guard.after = WorkflowState.DEGRADED
    h.learning.succeeded(Workflow(id="wf", step="import-app"), Repo("/repo", "c2"), "step-1",
                         "run-1")
    assert h.store.drafts == [] and len(h.store.failures) == 1
    assert h.client.data == {"t:learning:pending:step-1": "1"}


def test_without_a_workflow_id_each_repository_is_its_own_workflow() -> None:
    assert learning_workflow(Workflow(step="s"), Repo("/a")) == "repo:/a"
    assert learning_workflow(Workflow(id="nightly", step="s"), Repo("/a")) == "nightly"


def test_a_verified_draft_is_only_ever_suggested() -> None:
    """validate.decide: a DRAFT never applies, whatever the mode and the human policy."""
    from pipeline.events import CandidateEvent
    from pipeline.validate.judges import Vote
    from pipeline.validate.request import FixRequest
    from pipeline.validate.validator import decide
    from pipeline.validate.verify import Verification

    fix = {"id": "precedent-1", "kind": "diff", "category": Category.RISKY.value,
           "state": "DRAFT", "rendered": {"diff": "..."}}
    cand = CandidateEvent(id="e:lookup", error_id="e", error=event(), fix=fix)
    votes = [Vote("verification", True, "ok")]
    for human in (True, False):
        req = FixRequest(cand, fix, Path("/repo"), Policy(human_for_risky=human))
        for mode in Mode:
            decision, _ = decide(req, mode, Verification(True, "passed"), votes)
            assert decision == "suggest", (human, mode)


def test_heal_commits_are_recognised_by_their_trailer(tmp_path: Path) -> None:
    import subprocess

    from producers.learning import heal_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c",
                               "user.name=t", *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "a person's fix")
    assert not heal_commit(Repo(str(tmp_path), git("rev-parse", "HEAD")))
    git("commit", "-q", "--allow-empty", "-m", "heal: fix", "--trailer", "Healed-by: heal",
        "--trailer", "Heal-Fix: precedent-1")
    assert heal_commit(Repo(str(tmp_path), git("rev-parse", "HEAD")))
    assert not heal_commit(Repo(str(tmp_path / "nowhere"), "abc"))
