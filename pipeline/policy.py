"""Per-repository policy: ``heal.toml`` at the repository root.

Keys (all optional; defaults per DESIGN.md: mode ``suggest``, verification = the failing
command itself, nothing protected beyond ``.git/``)::

    mode = "suggest"                      # observe | suggest | auto-safe | auto

    [verify]
    include_failing = true                # always re-run the (trusted) failing command
    [[verify.checks]]                     # extra checks; run only when operator configuration
    name = "tests"                        # allows the argv (pipeline.trust.operator)
    argv = ["python", "-m", "pytest", "-q"]
    timeout_s = 120

    [protect]
    paths = ["migrations/**", "*.lock"]   # globs no fix may touch (".git/**" always)

    [limits]
    max_diff_lines = 400
    max_files = 20
    dedupe_minutes = 10                   # identical request decided recently -> refused
                                          # (0 turns dedupe off)
    check_timeout_s = 120                 # default timeout of a check

    [judges]
    human_for_risky = true
    [judges.llm]                          # the LLM judge is operator configuration; a
    enabled = false                       # repository may only turn it off

    [backfill]                            # `heal backfill --discover`: where logs are
    paths = ["logs/**", "**/*.log"]       # replaces the default globs
    exclude = ["vendor", "fixtures/**"]   # directory names or globs, skipped

    [escalation]                          # who is notified when: see
    [[escalation.rules]]                  # pipeline.guardrails.escalation_policy
    name = "db-now"
    when = "immediate"                    # immediate | attempts | unresolved

    [[windows]]                           # change windows (UTC); none = always open
    days = ["mon", "tue", "wed", "thu", "fri"]
    start = "08:00"
    end = "18:00"

    [execution] [budget] [breaker] [lifecycle]   # guardrail thresholds: pipeline/policy_limits.py

The guardrail thresholds (``[limits]``, ``[budget]``, ``execution.min_auto_confidence`` and
``degraded_confidence_bonus``, ``escalation.dedupe_hours``) may only be tightened here, and
``[breaker]``, ``[lifecycle]`` and the ``[execution]`` thresholds that move a workflow's state
(kept per workflow id, which repositories share) are operator configuration's alone:
``pipeline.trust.operator.cap_limits`` applies that rule to the parsed policy.

Invalid values raise :class:`PolicyError` naming the key, the value and the rule.
:class:`PolicyLoader` hot-reloads on mtime and keeps the last valid policy in force when the
file turns invalid (its ``warning`` says so): a trusted repository's last valid text is kept in
the state home (:mod:`storage.policies`) with when it was seen valid, so every worker and a
restarted one agree; the newest valid policy known (the stored one or the worker's own) wins,
the lower mode when that is in doubt; with none ever seen the safest mode (observe) is in
force, not the defaults.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import PolicyError, bound
from pipeline.guardrails.escalation_policy import EscalationPolicy, parse_escalation
from pipeline.model import Mode
from pipeline.policy_limits import SECTIONS, Limits, parse_limits
from pipeline.safefile import MAX_CONFIG_BYTES, FileRefused, parse_toml, read_config_text

log = logging.getLogger(__name__)

POLICY_FILE = "heal.toml"
#: the largest heal.toml read; a larger one is refused like any invalid file
MAX_POLICY_BYTES = MAX_CONFIG_BYTES
ALWAYS_PROTECTED = (".git", ".git/**")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOP_KEYS = {"mode", "verify", "protect", "limits", "judges", "windows", "backfill",
            "escalation", *SECTIONS}


@dataclass(frozen=True)
class Check:
    """One verification command (argv, never a shell string)."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float
    #: whether the file named ``timeout_s``; a repository check that does not runs with the
    #: ``limits.check_timeout_s`` in force (pipeline.trust.operator.bounded_check)
    timeout_set: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class Window:
    days: tuple[str, ...]
    start: dt.time
    end: dt.time

    def contains(self, moment: dt.datetime) -> bool:
        day = DAYS[moment.weekday()]
        return day in self.days and self.start <= moment.time() < self.end


@dataclass(frozen=True)
class LLMJudgeConfig:
    enabled: bool = False
    url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Policy:
    mode: Mode = Mode.SUGGEST
    checks: tuple[Check, ...] = ()
    include_failing: bool = True
    protected: tuple[str, ...] = ALWAYS_PROTECTED
    max_diff_lines: int = 400
    max_files: int = 20
    dedupe_minutes: float = 10.0
    check_timeout_s: float = 120.0
    human_for_risky: bool = True
    llm: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)
    windows: tuple[Window, ...] = ()
    backfill_paths: tuple[str, ...] = ()    # empty: producers.discovery.DEFAULT_GLOBS
    backfill_exclude: tuple[str, ...] = ()
    #: ``[escalation]``: see :mod:`pipeline.guardrails.escalation_policy`
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    #: ``[execution]``, ``[budget]``, ``[breaker]``, ``[lifecycle]``: see
    #: :mod:`pipeline.policy_limits`
    limits: Limits = field(default_factory=Limits)
    source: str = "defaults"
    #: the repository turned the operator's LLM judge off (``judges.llm.enabled = false``)
    llm_opt_out: bool = False
    #: the ``[limits]`` keys the file sets (``limits.max_files``, ...): operator configuration
    #: decides the others (``pipeline.trust.operator.cap_limits``)
    limits_from_file: frozenset[str] = frozenset()

    def is_protected(self, rel_path: str) -> str | None:
        """The glob protecting ``rel_path`` (posix, relative to the repo), or None."""
        path = rel_path[2:] if rel_path.startswith("./") else rel_path
        for glob in self.protected:
            if fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path, glob.rstrip("/")):
                return glob
            if glob.endswith("/**") and (path + "/").startswith(glob[:-2]):
                return glob
        return None

    def window_open(self, moment: dt.datetime | None = None) -> bool:
        if not self.windows:
            return True
        now = moment or dt.datetime.now(dt.UTC)
        return any(w.contains(now) for w in self.windows)


# --- validation helpers (each names key, value and rule) -----------------------------------


def _mode(key: str, value: Any) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        rule = "must be one of " + ", ".join(m.value for m in Mode)
        raise PolicyError(key, value, rule) from None


def _table(key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(key, value, "must be a table")
    for sub in value:
        if sub not in allowed:
            rule = "unknown key; allowed: " + ", ".join(sorted(allowed))
            raise PolicyError(f"{key}.{sub}", value[sub], rule)
    return value


def _finite(value: Any, ok_type: Any) -> bool:
    """A number of ``ok_type`` (never a bool), finite: NaN and infinity compare False with
    everything, so they would slip through any range check."""
    return (not isinstance(value, bool) and isinstance(value, ok_type)
            and not (isinstance(value, float) and not math.isfinite(value)))


def _positive(key: str, value: Any, *, high: float, integer: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if not _finite(value, ok_type) or not 0 < value <= high:
        kind = "a positive integer" if integer else "a positive number"
        raise PolicyError(key, value, f"must be {kind} <= {bound(high)}")
    return value


def _non_negative(key: str, value: Any, *, high: float) -> float:
    if not _finite(value, (int, float)) or not 0 <= value <= high:
        raise PolicyError(key, value,
                          f"must be a number >= 0 and <= {bound(high)} (0 turns it off)")
    return float(value)


#: the ranges of the numbers parse_policy reads (the guardrails': pipeline.policy_limits)
MAX_DIFF_LINES = 1_000_000
MAX_FILES = 100_000
MAX_DEDUPE_MINUTES = 10_080          # a week
MAX_TIMEOUT_S = 86_400               # a day: a check or the failing-command re-run
#: ``limits.check_timeout_s`` when neither the operator nor the repository sets it; a
#: repository may only lower the operator's (pipeline.trust.operator.cap_limits)
DEFAULT_CHECK_TIMEOUT_S = 120.0
MAX_LLM_TIMEOUT_S = 3_600
#: the ``[limits]`` keys and their rules; a repository's heal.toml and operator configuration
#: (pipeline.trust.operator) read them alike (:func:`core_limits`)
_CORE_RULES: dict[str, Callable[[str, Any], Any]] = {
    "max_diff_lines": lambda k, v: _positive(k, v, integer=True, high=MAX_DIFF_LINES),
    "max_files": lambda k, v: _positive(k, v, integer=True, high=MAX_FILES),
    "dedupe_minutes": lambda k, v: _non_negative(k, v, high=MAX_DEDUPE_MINUTES),
    "check_timeout_s": lambda k, v: float(_positive(k, v, high=MAX_TIMEOUT_S)),
}


def core_limits(data: dict[str, Any]) -> dict[str, Any]:
    """The ``[limits]`` table of ``data`` (a parsed heal.toml), each key it sets validated
    against its rule. Raises PolicyError naming an unknown key or a value out of range."""
    limits = _table("limits", data.get("limits", {}), set(_CORE_RULES))
    return {key: _CORE_RULES[key](f"limits.{key}", value) for key, value in limits.items()}


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(key, value, "must be true or false")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise PolicyError(key, value, "must be a string")
    return value


def _argv(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise PolicyError(key, value, "must be a list of strings (argv), not a shell string")
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise PolicyError(key, value, "must be a non-empty list of strings (argv)")
    return tuple(value)


def _checks(verify: dict[str, Any], default_timeout: float) -> tuple[Check, ...]:
    raw = verify.get("checks", [])
    if not isinstance(raw, list):
        raise PolicyError("verify.checks", raw, "must be an array of tables ([[verify.checks]])")
    out: list[Check] = []
    for i, item in enumerate(raw):
        key = f"verify.checks[{i}]"
        item = _table(key, item, {"name", "argv", "timeout_s"})
        argv = _argv(f"{key}.argv", item.get("argv"))
        name = _str(f"{key}.name", item.get("name", argv[0]))
        timeout = float(_positive(f"{key}.timeout_s", item.get("timeout_s", default_timeout),
                                  high=MAX_TIMEOUT_S))
        out.append(Check(name=name, argv=argv, timeout_s=timeout,
                         timeout_set="timeout_s" in item))
    return tuple(out)


def _hhmm(value: dt.time) -> str:
    return value.strftime("%H:%M") if value.second == value.microsecond == 0 else \
        value.isoformat()


def _time(key: str, value: Any) -> dt.time:
    if isinstance(value, dt.time):  # TOML's own local time (start = 08:00:00, no quotes)
        raise PolicyError(key, value, f"must be a quoted string such as \"08:00\": write "
                          f"\"{_hhmm(value)}\" (with the quotes)")
    if not isinstance(value, str):
        raise PolicyError(key, value, "must be a quoted time of day such as \"08:00\"")
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise PolicyError(key, value, "must be a time of day such as \"08:00\"") from None


def _windows(raw: Any) -> tuple[Window, ...]:
    if not isinstance(raw, list):
        raise PolicyError("windows", raw, "must be an array of tables ([[windows]])")
    out: list[Window] = []
    for i, item in enumerate(raw):
        key = f"windows[{i}]"
        item = _table(key, item, {"days", "start", "end"})
        days = item.get("days", list(DAYS))
        if not isinstance(days, list) or not all(d in DAYS for d in days):
            raise PolicyError(f"{key}.days", days, "must list days among " + ", ".join(DAYS))
        start = _time(f"{key}.start", item.get("start", "00:00"))
        end = _time(f"{key}.end", item.get("end", "23:59:59"))
        if end <= start:
            raise PolicyError(f"{key}.end", item.get("end"), "must be later than start")
        out.append(Window(days=tuple(days), start=start, end=end))
    return tuple(out)


def _protected(protect: dict[str, Any]) -> tuple[str, ...]:
    paths = protect.get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise PolicyError("protect.paths", paths, "must be a list of non-empty glob strings")
    return ALWAYS_PROTECTED + tuple(paths)


def _globs(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise PolicyError(key, value, "must be a list of non-empty glob strings")
    return tuple(value)


def _llm(judges: dict[str, Any]) -> LLMJudgeConfig:
    raw = _table("judges.llm", judges.get("llm", {}),
                 {"enabled", "url", "model", "api_key_env", "timeout_s"})
    cfg = LLMJudgeConfig(
        enabled=_bool("judges.llm.enabled", raw.get("enabled", False)),
        url=_str("judges.llm.url", raw.get("url", "")),
        model=_str("judges.llm.model", raw.get("model", "")),
        api_key_env=_str("judges.llm.api_key_env", raw.get("api_key_env", "OPENAI_API_KEY")),
        timeout_s=float(_positive("judges.llm.timeout_s", raw.get("timeout_s", 30.0),
                                  high=MAX_LLM_TIMEOUT_S)),
    )
    if cfg.enabled and not (cfg.url.startswith("http") and cfg.model):
        raise PolicyError("judges.llm.url", cfg.url, "an enabled LLM judge needs an http(s) url "
                          "and a model")
    return cfg


#: keys only operator configuration ($HEAL_HOME/heal.toml or HEAL_CONFIG) may set: they
#: reach the network or name secrets (pipeline.trust.operator)
OPERATOR_ONLY = ("judges.llm.url", "judges.llm.model", "judges.llm.api_key_env",
                 "judges.llm.timeout_s", "judges.llm.enabled")


def _repository_llm(judges: dict[str, Any]) -> bool:
    """A repository may only turn the operator's LLM judge off; True when it does.

    Raises:
        PolicyError: any other ``judges.llm`` key, naming it.
    """
    raw = judges.get("llm", {})
    if not isinstance(raw, dict):
        raise PolicyError("judges.llm", raw, "must be a table")
    for sub, value in raw.items():
        key = f"judges.llm.{sub}"
        if sub == "enabled" and value is False:
            continue
        rule = ("reaches the network or names a secret: only operator configuration "
                "($HEAL_HOME/heal.toml or HEAL_CONFIG) may set it; a repository may only "
                "narrow it (judges.llm.enabled = false)")
        raise PolicyError(key, value, rule if key in OPERATOR_ONLY else "unknown key")
    return raw.get("enabled") is False


def parse_policy(data: dict[str, Any], source: str = "heal.toml") -> Policy:
    """Build a repository's :class:`Policy` from parsed TOML.

    Settings that reach the network (the LLM judge) are refused here; programs the
    repository asks to run (``[[verify.checks]]``) are parsed but run only when operator
    configuration allows them (``pipeline.trust.operator.restrict``).

    Raises:
        PolicyError: a key is unknown or a value breaks its rule (the message names both).
    """
    for key in data:
        if key not in TOP_KEYS:
            allowed = ", ".join(sorted(TOP_KEYS))
            raise PolicyError(key, data[key], f"unknown key; allowed: {allowed}")
    limits = core_limits(data)
    check_timeout = limits.get("check_timeout_s", DEFAULT_CHECK_TIMEOUT_S)
    verify = _table("verify", data.get("verify", {}), {"include_failing", "checks"})
    judges = _table("judges", data.get("judges", {}), {"human_for_risky", "llm"})
    backfill = _table("backfill", data.get("backfill", {}), {"paths", "exclude"})
    return Policy(
        mode=_mode("mode", data.get("mode", Mode.SUGGEST.value)),
        checks=_checks(verify, check_timeout),
        include_failing=_bool("verify.include_failing", verify.get("include_failing", True)),
        protected=_protected(_table("protect", data.get("protect", {}), {"paths"})),
        max_diff_lines=limits.get("max_diff_lines", 400),
        max_files=limits.get("max_files", 20),
        dedupe_minutes=float(limits.get("dedupe_minutes", 10)),
        check_timeout_s=check_timeout,
        human_for_risky=_bool("judges.human_for_risky", judges.get("human_for_risky", True)),
        llm_opt_out=_repository_llm(judges),
        windows=_windows(data.get("windows", [])),
        backfill_paths=_globs("backfill.paths", backfill.get("paths", [])),
        backfill_exclude=_globs("backfill.exclude", backfill.get("exclude", [])),
        escalation=parse_escalation(data.get("escalation", {})),
        limits=parse_limits(data),
        limits_from_file=frozenset(f"limits.{k}" for k in limits),
        source=source,
    )


def read_policy_text(path: Path) -> str | None:
    """``heal.toml``'s text, read safely (:mod:`pipeline.safefile`: no symbolic link, no FIFO
    or device, at most :data:`MAX_POLICY_BYTES`, strict UTF-8), or None when there is no file.

    Raises:
        PolicyError: the file cannot be read safely.
    """
    try:
        return read_config_text(path, limit=MAX_POLICY_BYTES)
    except FileRefused as exc:
        raise PolicyError.whole_file(str(path), str(exc)) from exc


def policy_from_text(text: str, path: Path, source: str = "") -> tuple[Policy, dict[str, Any]]:
    """The policy ``text`` (the content of ``path``) says, and its parsed table.

    Raises:
        PolicyError: not valid TOML, or a rule is broken.
    """
    try:
        data = parse_toml(text)
    except FileRefused as exc:
        raise PolicyError.whole_file(str(path), str(exc)) from exc
    return parse_policy(data, source=source or str(path)), data


def read_policy(path: Path) -> tuple[Policy, dict[str, Any]]:
    """``heal.toml`` read safely and validated: (the policy, the parsed table), or the
    defaults and ``{}`` when there is no file.

    Raises:
        PolicyError: the file cannot be read safely, is not valid TOML or breaks a rule.
    """
    text = read_policy_text(path)
    if text is None:
        return Policy(), {}
    return policy_from_text(text, path)


def load_policy(path: Path) -> Policy:
    """Read ``heal.toml`` (or return defaults when it does not exist).

    Raises:
        PolicyError: the file is not valid TOML or breaks a rule.
    """
    return read_policy(path)[0]


#: the policy in force when the file is invalid and no valid one was ever seen: the safest
#: mode (observe: heal decides nothing that runs a command or writes to the repository)
FAIL_SAFE_SOURCE = "observe only (fail-safe: no valid heal.toml of this repository was seen)"


class LastValid(Protocol):
    """Where the last valid policy text of each repository is kept (storage.policies)."""

    def remember(self, repo: str, text: str, present: bool,
                 seen_at: float | None = None) -> bool: ...

    def last(self, repo: str) -> Any: ...


#: two valid policies seen valid closer together than this (seconds) are in doubt (two
#: workers reading while the file changed, clocks a little apart): the lower mode wins
DOUBT_S = 1.0
_MODE_ORDER = tuple(Mode)


def _state_store() -> LastValid | None:
    """The state home's store of last valid policies (every worker and command that uses
    this state home shares it), or None when the state home cannot be found."""
    from pipeline import statehome
    from storage.policies import LastValidPolicies

    try:
        return LastValidPolicies.at_home(statehome.resolve(os.environ).path)
    except Exception as exc:  # noqa: BLE001 - the policy must still be decided
        log.warning("heal.toml: the state home cannot be found to keep the last valid "
                    "policy (%s); only this process remembers it", exc)
        return None


def _stamp_text(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Seen:
    """A valid policy and when it was seen valid (seconds since the epoch)."""

    policy: Policy
    at: float


def newest(a: _Seen | None, b: _Seen | None) -> _Seen | None:
    """Of two valid policies, the one seen valid later; when they were seen within
    :data:`DOUBT_S` of each other the order is in doubt and the lower mode wins (the safe
    choice: it runs and changes less)."""
    if a is None or b is None:
        return a or b
    if abs(a.at - b.at) <= DOUBT_S and a.policy.mode != b.policy.mode:
        lower = min(a, b, key=lambda s: _MODE_ORDER.index(s.policy.mode))
        return lower
    return a if a.at >= b.at else b


class PolicyLoader:
    """Hot-reloading policy of one repository.

    ``current()`` re-reads the file when its mtime changed. Each valid file (or its absence:
    the defaults) of a trusted repository (``trusted``: the validate stage's trust check) is
    recorded in the shared, durable store (:mod:`storage.policies`) with when it was seen
    valid. An invalid file puts in force the newest valid policy known: this process's own
    copy or the one recorded there, whichever was seen valid later (the lower mode when that
    is in doubt), so every worker and a restarted one agree, and an older copy never replaces
    a newer one this process holds (a store that could not be written, two workers racing).
    With none ever seen the safest mode (observe) is in force, not the defaults. ``warning``
    then says why and which policy is in force (logged once per change); ``Policy.source``
    names where the policy in force came from.
    """

    def __init__(self, repo: Path,
                 store: Callable[[], LastValid | None] = _state_store,
                 trusted: bool | None = None) -> None:
        self.path = Path(repo) / POLICY_FILE
        self.repo = str(Path(repo))
        self._store = store
        #: True: the repository passed the trust check (its policy is recorded and read
        #: back); False: it did not (neither); None: not told (read back only: a row exists
        #: only for a repository that was trusted when it was written)
        self.trusted = trusted
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._policy = Policy()
        #: the last valid policy this process saw, and when
        self._valid: _Seen | None = None
        self.warning = ""

    def trust(self, trusted: bool | None) -> PolicyLoader:
        """Say whether the repository passed the trust check; a change re-reads the file on
        the next ``current()`` (a newly trusted repository's valid policy is then recorded)."""
        if trusted is not None and trusted != self.trusted:
            self.trusted, self._loaded = trusted, False
        return self

    def _read_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.lstat()  # the file itself: a symbolic link is refused, not followed
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, -1, -1)  # unreadable: load_policy says why
        return (st.st_mtime_ns, st.st_size, st.st_mode)

    def current(self) -> Policy:
        """The policy in force; never raises for the file's sake (a stage must not fail
        because a repository's heal.toml is hostile): an invalid file keeps the newest valid
        policy known and ``warning`` says so."""
        seen_at = time.time()  # before the read: a later read never looks older than this one
        stamp = self._read_stamp()
        if self._loaded and stamp == self._stamp:
            return self._policy
        try:
            text = read_policy_text(self.path)
            policy = Policy() if text is None else policy_from_text(text, self.path)[0]
        except PolicyError as exc:
            self._keep(str(exc))
        except Exception as exc:  # noqa: BLE001 - a file's bytes must never break a stage
            self._keep(f"heal.toml: {self.path} cannot be loaded ({type(exc).__name__}: "
                       f"{str(exc)[:200]})")
        else:
            self._policy, self.warning = policy, ""
            self._valid = _Seen(policy, seen_at)
            self._remember(text, seen_at)
        self._loaded, self._stamp = True, stamp
        return self._policy

    def _shared(self) -> LastValid | None:
        return self._store()

    def _remember(self, text: str | None, seen_at: float) -> None:
        if self.trusted is not True:  # an untrusted event never makes heal keep a file
            return
        try:
            store = self._shared()
            if store is not None:
                store.remember(self.repo, text or "", text is not None, seen_at)
        except Exception as exc:  # noqa: BLE001 - the policy in force is decided already
            log.warning("heal.toml: could not record the valid policy of %s for other "
                        "workers (%s); this worker keeps its own copy (mode %s, seen valid "
                        "at %s) and prefers it to any older recorded one", self.repo, exc,
                        self._policy.mode.value, _stamp_text(seen_at))

    def _stored(self) -> _Seen | None:
        """The last valid policy the shared store holds for this repository, or None."""
        if self.trusted is False:
            return None
        try:
            store = self._shared()
            stored = None if store is None else store.last(self.repo)
        except Exception as exc:  # noqa: BLE001 - fall back to what this process knows
            log.warning("heal.toml: the last valid policy of %s cannot be read (%s); this "
                        "worker uses its own copy, if it saw one", self.repo, exc)
            return None
        if stored is None:
            return None
        when = _stamp_text(stored.saved_at)
        if not stored.present:
            return _Seen(Policy(source=(
                f"defaults (no heal.toml, the last valid state, from {when})")), stored.saved_at)
        try:
            return _Seen(policy_from_text(stored.text, self.path, source=(
                f"the last valid copy of {self.path} from {when}"))[0], stored.saved_at)
        except Exception as exc:  # noqa: BLE001 - a copy that no longer validates
            log.warning("heal.toml: the recorded copy of %s no longer validates (%s)",
                        self.path, exc)
            return None

    def _own(self) -> _Seen | None:
        """This process's last valid policy, named as its own copy."""
        if self._valid is None:
            return None
        mine, when = self._valid.policy, _stamp_text(self._valid.at)
        source = (f"this worker's copy of {self.path} seen valid at {when}"
                  if mine.source == str(self.path) else
                  f"{mine.source}, seen valid by this worker at {when}")
        return _Seen(replace(mine, source=source), self._valid.at)

    def _keep(self, why: str) -> None:
        chosen = newest(self._own(), self._stored())
        self._policy = chosen.policy if chosen is not None else \
            Policy(mode=Mode.OBSERVE, source=FAIL_SAFE_SOURCE)
        if self._policy.source == FAIL_SAFE_SOURCE:
            self.warning = (f"{why}; no valid policy of this repository was ever seen, so the "
                            "safest mode is in force: observe (heal runs and changes nothing "
                            "here until heal.toml is fixed)")
        else:
            self.warning = (f"{why}; keeping the last valid policy: mode "
                            f"{self._policy.mode.value} from {self._policy.source}")
        log.warning("%s", self.warning)


_LOADERS: dict[Path, PolicyLoader] = {}


def policy_for(repo: str | Path, trusted: bool | None = None) -> PolicyLoader:
    """The shared hot-reloading loader of one repository (one per process). ``trusted``: the
    trust check's answer for it (pipeline.trust.boundary.assess ``repo_trusted``), when the
    caller has one: only a trusted repository's policy is recorded in the state home."""
    key = Path(repo).resolve()
    loader = _LOADERS.get(key)
    if loader is None:
        loader = _LOADERS[key] = PolicyLoader(key, trusted=trusted)
    return loader.trust(trusted)
