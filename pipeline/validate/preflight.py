"""Phase 1: fast pre-flight checks, run in parallel; each returns a named result with a reason.

A check is a function ``(FixRequest, Preflight) -> (ok, reason)``; adding one is adding a
row to :data:`CHECKS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.gitops import GitRepo
from pipeline.replayid import original_id
from pipeline.runtime.connection import redis_failure
from pipeline.validate.declared import installs_declared, undeclared_module
from pipeline.validate.owner import owner_gone, owner_token
from pipeline.validate.paths import diff_paths, param_paths, path_problem
from pipeline.validate.request import FixRequest
from pipeline.validate.runner import shell_with_error_text
from pipeline.validate.secrets import diff_size, find_secrets

Result = tuple[bool, str]


class Preflight:
    """Runs the pre-flight checks for one request."""

    def __init__(self, settings: Settings, client: redis.Redis | None) -> None:
        self.settings = settings
        self.client = client

    def run(self, req: FixRequest) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
            futures = {name: pool.submit(_guard, fn, req, self) for name, fn in CHECKS.items()}
            return [{"name": name, **fut.result()} for name, fut in futures.items()]

    # -- the dedupe key is also released by the validator when a request errors out --------
    def dedupe_key(self, req: FixRequest) -> str:
        return self.settings.key("validate", "request", req.request_key)

    def inflight_key(self, req: FixRequest) -> str:
        """Names the process validating the request (:mod:`pipeline.validate.owner`) until
        it decided; the validator deletes it then."""
        return self.settings.key("validate", "inflight", req.request_key)


#: take the marker over from ``ARGV[1]`` (an abandoned request) for ``ARGV[2]``
_TAKE_OVER = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
              "redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
              "redis.call('set', KEYS[2], ARGV[4], 'EX', ARGV[3]) return 1 end return 0")


def _guard(fn: Callable[[FixRequest, Preflight], Result], req: FixRequest,
           pf: Preflight) -> dict[str, Any]:
    started = time.monotonic()
    try:
        ok, reason = fn(req, pf)
    except HealError as exc:
        if exc.stops_stage:  # Redis's ACL refused the check: no fix's fault, the stage stops
            raise
        ok, reason = False, str(exc)
    return {"ok": ok, "reason": reason, "duration_s": round(time.monotonic() - started, 3)}


def check_applies(req: FixRequest, pf: Preflight) -> Result:
    """The diff applies cleanly, or the command/playbook argv are well formed (no shells)."""
    if req.kind == "diff":
        diff = req.rendered.get("diff")
        if not isinstance(diff, str) or not diff.strip():
            return False, "diff fix has no rendered diff"
        ok, msg = GitRepo(req.root).apply_check(
            diff, unidiff_zero=bool(req.rendered.get("unidiff_zero")))
        return ok, "git apply --check: clean" if ok else f"patch does not apply: {_why(msg)}"
    if req.kind in ("command", "playbook"):
        argvs = req.step_argvs()
        if req.kind == "command" and not (argvs and argvs[0]):
            return False, "command fix has no rendered argv"
        for argv in argvs:
            if not argv or not all(isinstance(a, str) for a in argv):
                return False, f"argv {argv!r} must be a non-empty list of strings"
            if shell_with_error_text(argv, req.candidate.params):
                return False, (f"argv {argv!r} passes text from the error to a shell; "
                               "heal never does")
        return True, f"{len(argvs)} argv well formed; parameters validated when rendered"
    return False, f"fix kind {req.kind!r} cannot be applied"


def _why(message: str) -> str:
    """git's reason a patch does not apply (``patch failed: Makefile:1; Makefile: patch does
    not apply``), bounded: not its progress lines (``Checking patch Makefile...``) nor the
    lines of the patch it quotes after ``while searching for:`` (another repository's file)."""
    reasons = [line.removeprefix("error: ").strip() for line in message.splitlines()
               if line.startswith(("error: ", "fatal: "))
               and not line.rstrip().endswith("while searching for:")]
    if not reasons:  # no error line: the last line that is not progress
        rest = [line.strip() for line in message.splitlines()
                if line.strip() and not line.startswith("Checking patch ")]
        reasons = rest[-1:] or ["git apply --check failed"]
    # "<file>: patch does not apply" repeats what the caller says, once a cause is named
    named = [r for r in reasons if not r.endswith(": patch does not apply")] or reasons
    why = "; ".join(dict.fromkeys(named))
    return why if len(why) <= 300 else why[:299] + "…"


def _touched(req: FixRequest) -> list[str]:
    if req.kind == "diff":
        return diff_paths(str(req.rendered.get("diff", "")))
    values = [a for argv in req.step_argvs() for a in argv[1:]]
    values += [v for v in req.candidate.params.values() if isinstance(v, str)]
    from pipeline.validate.verify import rel_cwd

    cwd = req.root / rel_cwd(req.candidate.error, req.root)
    return param_paths(req.root, values, cwd) + req.action_paths()


def check_paths(req: FixRequest, pf: Preflight) -> Result:
    """Inside the repository (no ``..``, no symlink escape) and outside protected paths."""
    paths = _touched(req)
    from pipeline.validate.verify import rel_cwd  # (verify imports the preflight's peers)

    cwd = req.root / rel_cwd(req.candidate.error, req.root)
    for path in paths:
        problem = path_problem(req.root, path, req.policy, cwd)
        if problem and not (req.kind == "playbook" and _git_internal_ok(req, path)):
            return False, problem
    return True, f"{len(paths)} path(s) inside the repository, none protected"


def _git_internal_ok(req: FixRequest, path: str) -> bool:
    # Playbooks such as the stale-lock removal act on .git/*.lock by design; only lock files
    # directly inside the repository's own .git are allowed, and only for playbooks.
    if ".." in path or not path.endswith(".lock"):
        return False
    target = Path(path) if Path(path).is_absolute() else req.root / path
    return target.parent == req.root / ".git"


def check_declared(req: FixRequest, pf: Preflight) -> Result:
    """A fix that installs the declared Node dependencies is for a package the manifest
    declares (:mod:`pipeline.validate.declared`; the name from the error is only compared)."""
    tools = [t for argv in req.step_argvs() if (t := installs_declared(argv))]
    module = req.candidate.params.get("module")  # what an import named (from the text)
    if not tools or not isinstance(module, str) or not module:
        return True, "not an install of the declared dependencies for a named package"
    from pipeline.validate.verify import rel_cwd

    cwd = req.root / rel_cwd(req.candidate.error, req.root)
    why = undeclared_module(module, req.root, cwd, req.candidate.error.text, tools[0])
    return (False, why) if why else (
        True, f"{tools[0]} install may restore {module} (declared, or heal cannot tell)")


def check_limits(req: FixRequest, pf: Preflight) -> Result:
    if req.kind != "diff":
        return True, "checked on the realized change during verification"
    lines, files = diff_size(str(req.rendered.get("diff", "")))
    pol = req.policy
    if lines > pol.max_diff_lines:
        return False, f"diff changes {lines} lines; limits.max_diff_lines is {pol.max_diff_lines}"
    if files > pol.max_files:
        return False, f"diff touches {files} files; limits.max_files is {pol.max_files}"
    return True, f"{lines} lines in {files} file(s), within limits"


def check_secrets(req: FixRequest, pf: Preflight) -> Result:
    if req.kind != "diff":
        return True, "checked on the realized change during verification"
    hits = find_secrets(str(req.rendered.get("diff", "")))
    return (False, "diff adds what looks like a secret: " + ", ".join(hits)) if hits else (
        True, "no secrets added")


def check_breaker(req: FixRequest, pf: Preflight) -> Result:
    if pf.client is None:
        return True, "no Redis client: breaker not consulted"
    from pipeline.guardrails.alerts import alerting_breaker
    from pipeline.guardrails.breaker import error_scope

    # a half-open probe that timed out re-opens the breaker here: that trip notifies too;
    # the thresholds are the repository's heal.toml [breaker] keys
    ok, reason = alerting_breaker(pf.client, pf.settings, req.policy.limits.breaker()).allow(
        *error_scope(req.candidate.error), req.category)
    if not reason:
        return ok, "breaker closed" if ok else "breaker open"
    return ok, reason if reason.startswith("breaker") else f"breaker: {reason}"


def check_budget(req: FixRequest, pf: Preflight) -> Result:
    """Today's verification minutes and fix applications are not used up (reads only)."""
    if pf.client is None:
        return True, "no Redis client: budget not consulted"
    try:
        from pipeline.guardrails.budget import Budget
    except ImportError:
        return True, "budget not built yet: treated as available"
    budget = Budget(pf.client, pf.settings, req.policy.limits.budget())
    kinds = ("verification_minutes", "fix_applications",
             *(("llm_tokens",) if req.policy.llm.enabled else ()))
    for kind in kinds:
        room = budget.try_spend(kind, 0.0)  # amount 0: asks without spending
        if not room.allowed:
            return False, f"daily budget for {kind} used up ({room.used:g} of {room.limit:g})"
    return True, "budget available"


def check_window(req: FixRequest, pf: Preflight) -> Result:
    if req.policy.window_open():
        return True, "change window open" if req.policy.windows else "no change windows set"
    return False, "outside every change window in heal.toml [[windows]]"


def check_dedupe(req: FixRequest, pf: Preflight) -> Result:
    """No identical request (fingerprint + fix) in flight or decided in the last N minutes."""
    if pf.client is None:
        return True, "no Redis client: duplicate requests not detected"
    if req.policy.dedupe_minutes == 0:
        return True, "dedupe off (limits.dedupe_minutes = 0)"
    key = pf.dedupe_key(req)
    ttl = max(1, int(req.policy.dedupe_minutes * 60))
    mine = req.candidate.error_id
    inflight, me = pf.inflight_key(req), owner_token()
    try:
        if pf.client.set(key, mine, nx=True, ex=ttl):
            pf.client.set(inflight, me, ex=ttl)
            return True, "first request for this fingerprint and fix"
        holder, owner = pf.client.mget([key, inflight])
        holder_id = holder.decode() if isinstance(holder, bytes) else str(holder)
        if holder_id == mine:
            pf.client.set(inflight, me, ex=ttl)
            return True, "redelivery of the same request"
        owner_id = owner.decode() if isinstance(owner, bytes) else ""
        # in flight in a process that is gone (killed mid-validation): nobody will decide it
        if owner_id and owner_gone(owner_id) and pf.client.eval(
                _TAKE_OVER, 2, key, inflight, holder_id, mine, ttl, me):
            return True, (f"identical request of error {holder_id} was abandoned in flight "
                          f"(its process {owner_id.split('|')[1]} is gone): taken over")
    except redis.RedisError as exc:
        raise redis_failure(exc, "dedupe check", pf.settings.prefix) from exc
    return False, _duplicate(req, holder_id, in_flight=bool(owner_id))


def _duplicate(req: FixRequest, holder_id: str, in_flight: bool) -> str:
    """What the dedupe found: the request still in flight, or decided (its in-flight mark is
    released when the validator finishes), said as a replay of it when it is this error's
    original or another copy of it."""
    mine = req.candidate.error_id
    window = f"within {req.policy.dedupe_minutes:g} min"
    if original_id(holder_id) == original_id(mine):
        return (f"already handled as {holder_id} (this is a replay of "
                f"{original_id(mine)}), {'still in flight' if in_flight else 'decided'} "
                f"{window} (heal explain shows its outcome)")
    state = "still in flight" if in_flight else "already decided"
    return (f"identical request (same fingerprint and fix) {state} for error {holder_id} "
            f"{window}")


CHECKS: dict[str, Callable[[FixRequest, Preflight], Result]] = {
    "applies": check_applies,
    "paths": check_paths,
    "declared": check_declared,
    "limits": check_limits,
    "secrets": check_secrets,
    "breaker": check_breaker,
    "budget": check_budget,
    "window": check_window,
    "dedupe": check_dedupe,
}
