"""Phase 3: approval by judges. SAFE needs 1 approval, MODERATE 2, RISKY 3 (and a human
unless policy says otherwise). Built-in judges are deterministic; an optional LLM judge talks
to an OpenAI-compatible endpoint (off by default; its cost and tokens are recorded with its
vote, and the tokens against the daily ``llm_tokens`` budget).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pipeline.model import Category
from pipeline.policy import LLMJudgeConfig
from pipeline.validate.request import FixRequest
from pipeline.validate.verify import Verification


@dataclass(frozen=True)
class Vote:
    judge: str
    approve: bool
    reason: str
    cost_usd: float = 0.0
    tokens: int = 0  # LLM tokens the endpoint reported (usage.total_tokens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    request: FixRequest
    preflight: list[dict[str, Any]]
    verification: Verification
    history: dict[str, Any]


class Judge(Protocol):
    name: str

    def vote(self, evidence: Evidence) -> Vote: ...


class VerificationJudge:
    name = "verification"

    def vote(self, evidence: Evidence) -> Vote:
        v = evidence.verification
        if v.deferred:
            steps = (evidence.request.rendered.get("steps") or {}).get("validate") or []
            if evidence.request.kind == "command" and evidence.request.candidate.error.command:
                return Vote(self.name, True, "deferred to apply; the failing step is re-run "
                            "after the command")
            ok = bool(steps)
            return Vote(self.name, ok, f"deferred to apply; {len(steps)} validation step(s)"
                        if ok else "playbook has no validation steps to prove it worked")
        return Vote(self.name, v.passed, v.reason)


#: the most steps of a deferred fix (command or playbook) that run a program or touch a path
MAX_ACTING_STEPS = 10


class BlastRadiusJudge:
    """Small, contained changes only: a quarter of the policy limits at most."""

    name = "blast-radius"

    def vote(self, evidence: Evidence) -> Vote:
        v, pol = evidence.verification, evidence.request.policy
        max_lines, max_files = max(1, pol.max_diff_lines // 4), max(1, pol.max_files // 4)
        if v.deferred:
            # what can reach beyond the fix: programs run and paths touched (a ``sleep`` or
            # the ``rerun`` of the failing step changes nothing); every step is counted in
            # the reason, so a wait-and-retry playbook does not read as empty
            req = evidence.request
            n = len(req.step_argvs()) + len(req.action_paths())
            return Vote(self.name, n <= MAX_ACTING_STEPS,
                        f"{req.kind or 'fix'} with {req.step_count()} step(s), {n} running a "
                        f"program or touching a path (judge limit {MAX_ACTING_STEPS})")
        ok = v.lines <= max_lines and len(v.changed) <= max_files
        return Vote(self.name, ok, f"{v.lines} line(s) in {len(v.changed)} file(s); "
                    f"judge limit {max_lines} lines, {max_files} files")


class HistoryJudge:
    """The fix's own record: its state and how often it was reverted."""

    name = "history"

    def vote(self, evidence: Evidence) -> Vote:
        state = str(evidence.request.fix.get("state", "ACTIVE")).upper()
        if state in ("QUARANTINED", "DEPRECATED"):
            return Vote(self.name, False, f"fix is {state}")
        applied = int(evidence.history.get("applied", 0))
        reverted = int(evidence.history.get("rolled_back", 0))
        failed = int(evidence.history.get("failed", 0))
        bad = reverted + failed
        if bad and bad * 2 >= applied + bad:
            return Vote(self.name, False, f"reverted or failed {bad} of {applied + bad} times")
        return Vote(self.name, True, f"state {state}; applied {applied}, reverted {reverted}, "
                    f"failed verification {failed}")


class LLMJudge:
    """Asks an OpenAI-compatible chat endpoint for APPROVE/REJECT; never raises."""

    name = "llm"
    #: rough price per 1k tokens used to record a cost (the endpoint may bill differently)
    usd_per_1k_tokens = 0.002

    def __init__(self, config: LLMJudgeConfig) -> None:
        self.config = config

    def vote(self, evidence: Evidence) -> Vote:
        req = evidence.request
        prompt = (
            "You review an automated fix. Answer APPROVE or REJECT on the first line, then "
            f"one sentence why.\nError: {req.candidate.error.text[-1500:]}\n"
            f"Fix: {req.fix.get('title', req.fix_id)} ({req.kind}, {req.category})\n"
            f"Verification: {evidence.verification.reason}\n")
        body = json.dumps({"model": self.config.model, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.config.url.rstrip("/") + "/chat/completions"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers),
                                        timeout=self.config.timeout_s) as resp:
                data = json.loads(resp.read())
            text = str(data["choices"][0]["message"]["content"]).strip()
            tokens = int((data.get("usage") or {}).get("total_tokens", 0))
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            return Vote(self.name, False, f"LLM judge unavailable: {exc}")
        cost = round(tokens / 1000 * self.usd_per_1k_tokens, 6)
        return Vote(self.name, text.upper().startswith("APPROVE"), text[:300], cost, tokens)


BUILTIN: tuple[Judge, ...] = (VerificationJudge(), BlastRadiusJudge(), HistoryJudge())


def panel(req: FixRequest, strict: bool = False) -> list[Judge]:
    """The judges this category needs (every built-in one when ``strict``: a DEGRADED
    workflow), plus the LLM judge when policy enables it."""
    try:
        needed = Category(req.category).judges_required
    except ValueError:
        needed = Category.RISKY.judges_required
    if strict:
        needed = len(BUILTIN)
    judges: list[Judge] = list(BUILTIN[:needed])
    if req.policy.llm.enabled:
        judges.append(LLMJudge(req.policy.llm))
    return judges


def needs_human(req: FixRequest) -> bool:
    return req.category == Category.RISKY and req.policy.human_for_risky


def collect_votes(evidence: Evidence, strict: bool = False) -> list[Vote]:
    return [judge.vote(evidence) for judge in panel(evidence.request, strict)]
