"""What the validate stage is asked to judge: one candidate fix for one error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.events import CandidateEvent
from pipeline.policy import Policy


@dataclass(frozen=True)
class FixRequest:
    candidate: CandidateEvent
    fix: dict[str, Any]
    root: Path
    policy: Policy
    #: the failing command heal may re-run (pipeline.trust.boundary); empty: none or untrusted
    trusted_command: tuple[str, ...] = ()
    #: why the event's command is not trusted ('' when it is, or when there is none)
    trust_note: str = ""
    #: why this fix waits for a person whatever the mode (e.g. an undeclared package)
    hold: str = ""
    #: why the fix is not applied by itself although the mode would (pipeline.fixes.scope:
    #: the paths the failing command checked cannot be told); suggested, verified as usual
    unscoped: str = ""
    #: the mode the fix is judged under (part of the request: asking again with a higher
    #: mode, ``heal run --mode auto-safe`` after a suggestion, is a new request)
    mode: str = ""

    @property
    def fix_id(self) -> str:
        return str(self.fix.get("id", ""))

    @property
    def kind(self) -> str:
        return str(self.fix.get("kind", ""))

    @property
    def category(self) -> str:
        return str(self.fix.get("category", "RISKY")).upper()

    @property
    def rendered(self) -> dict[str, Any]:
        rendered = self.fix.get("rendered")
        return rendered if isinstance(rendered, dict) else {}

    @property
    def fingerprint(self) -> str:
        return self.candidate.fine or self.candidate.coarse or self.candidate.error_id

    @property
    def request_key(self) -> str:
        """Same fingerprint + same rendered fix in the same repository at the same commit,
        under the same mode = the same request (a new commit is a new situation and may be
        tried again; so is a higher mode, the person asking for more than a suggestion). The
        rendered fix (argv, steps or diff, hashed) is part of it: six permission errors on six
        files are six fixes, not one request and five duplicates (issue 11, item 12)."""
        commit = self.candidate.error.repo.commit
        rendered = hashlib.sha256(orjson.dumps(self.rendered, option=orjson.OPT_SORT_KEYS,
                                               default=str)).hexdigest()
        raw = f"{self.root}\0{commit}\0{self.fingerprint}\0{self.fix_id}\0{rendered}"
        if self.mode:
            raw += f"\0{self.mode}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def step_argvs(self) -> list[list[str]]:
        """Every argv this fix would run (command and playbook steps)."""
        r = self.rendered
        if self.kind == "command":
            return [list(r.get("argv") or [])]
        out: list[list[str]] = []
        steps = r.get("steps") or {}
        if isinstance(steps, dict):
            for group in steps.values():
                for step in group or []:
                    if isinstance(step, dict) and "argv" in step:
                        out.append(list(step["argv"] or []))
        return out

    def step_count(self) -> int:
        """Every step this fix takes: 1 for a command, each step of every playbook phase
        (argv steps and built-in actions such as ``sleep`` and ``rerun`` alike)."""
        if self.kind == "command":
            return 1
        steps = self.rendered.get("steps") or {}
        if not isinstance(steps, dict):
            return 0
        return sum(1 for group in steps.values() for step in group or []
                   if isinstance(step, dict))

    def action_paths(self) -> list[str]:
        """Path arguments of built-in playbook actions."""
        out: list[str] = []
        steps = self.rendered.get("steps") or {}
        if isinstance(steps, dict):
            for group in steps.values():
                for step in group or []:
                    args = step.get("args") if isinstance(step, dict) else None
                    if isinstance(args, dict) and isinstance(args.get("path"), str):
                        out.append(args["path"])
        return out
