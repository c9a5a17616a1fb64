"""Operator configuration: what heal may run, where, and what may reach the network.

Read from ``HEAL_CONFIG`` (a path) or ``$HEAL_HOME/heal.toml``, never from a repository.
A repository's ``heal.toml`` may only narrow it (see :func:`restrict`)::

    [trust]
    repos = ["/srv/checkout", "/home/ci/work/*"]    # repository roots heal may act on (globs)
    commands = [["make", "test"], ["python", "-m", "pytest", "*"]]  # re-runnable argv;
                                                    # a last "*" matches any further arguments
    packages = ["requests"]                         # installable even when no manifest names it
    max_mode = "auto"                               # no event or repository goes above this

    [[verify.checks]]                               # checks run for every repository
    name = "tests"
    argv = ["python", "-m", "pytest", "-q"]

    [judges]
    human_for_risky = true                          # false: a repository may waive the human
                                                    # for RISKY fixes (its heal.toml decides)
    [judges.llm]                                    # the only place an LLM judge is configured
    enabled = true
    url = "https://llm.internal/v1"
    model = "judge"
    api_key_env = "HEAL_LLM_KEY"

    [lifecycle]                                     # graduation: the operator's only
    min_attempts = 10
    [breaker]                                       # the shared breaker: the operator's only
    global_threshold = 5
    [execution]                                     # the workflow state's thresholds are the
    quarantine_failures = 10                        # operator's only; a repository may only
    min_auto_confidence = 0.7                       # tighten min_auto_confidence (cap_limits)
    [budget]
    automatic_fixes = 20
    deferred_retry_seconds = 30                     # a repository may only raise it
    [limits]
    max_diff_lines = 400                            # also max_files, dedupe_minutes
    check_timeout_s = 120                           # a repository may only lower it (and a
                                                    # check's timeout_s is capped by it)
    [escalation]
    dedupe_hours = 24                               # a repository may only lower it

The file is refused (ConfigError, naming the file and the reason) when other users may write
it or when git tracks it (``HEAL_HOME`` defaults to ``<repo>/.heal``, and a repository must
not be able to ship its own operator configuration).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ConfigError, PolicyError, toml_value
from pipeline.guardrails.escalation_policy import MAX_HOURS
from pipeline.model import Mode
from pipeline.policy import (
    DEFAULT_CHECK_TIMEOUT_S,
    Check,
    LLMJudgeConfig,
    Policy,
    _bool,
    _checks,
    _llm,
    _mode,
    _non_negative,
    _table,
    core_limits,
)
from pipeline.policy_limits import KEYS, SECTIONS, Limits, parse_limits
from pipeline.safefile import FileRefused, parse_toml, read_config_text
from pipeline.trust.private import check_private

log = logging.getLogger("heal.trust")

ENV_CONFIG = "HEAL_CONFIG"
OPERATOR_FILE = "heal.toml"
TOP_KEYS = {"trust", "verify", "judges", "limits", "escalation", *SECTIONS}
#: the ``[limits]`` keys operator configuration bounds: (key, Policy attribute, which value
#: is the stricter one); ``check_timeout_s`` bounds the minutes a verification spends of the
#: daily ``verification_minutes`` budget every repository shares
CORE_LIMITS = (("limits.max_diff_lines", "max_diff_lines", "lower"),
               ("limits.max_files", "max_files", "lower"),
               ("limits.dedupe_minutes", "dedupe_minutes", "higher"),
               ("limits.check_timeout_s", "check_timeout_s", "lower"))
#: ``escalation.dedupe_hours`` when the operator says nothing; the dedupe key of a
#: notification (fingerprint and rule) is shared by every repository, so a repository may
#: only lower it (more notifications, never fewer)
DEFAULT_DEDUPE_HOURS = 24.0
MODE_ORDER = (Mode.OBSERVE, Mode.SUGGEST, Mode.AUTO_SAFE, Mode.AUTO)


def lower_mode(a: Mode, b: Mode) -> Mode:
    """The more restrictive of two modes."""
    return a if MODE_ORDER.index(a) <= MODE_ORDER.index(b) else b


@dataclass(frozen=True)
class OperatorConfig:
    repos: tuple[str, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    packages: tuple[str, ...] = ()
    max_mode: Mode = Mode.AUTO
    checks: tuple[Check, ...] = ()
    llm: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)
    #: ``[judges] human_for_risky``: true (the default) keeps a human on every RISKY fix
    #: whatever a repository says; false lets a repository's ``judges.human_for_risky =
    #: false`` waive it (a repository may always ask for the human)
    human_for_risky: bool = True
    #: ``[execution]`` ``[budget]`` ``[breaker]`` ``[lifecycle]``: the values in force for
    #: every repository (``from_file``: the keys this file set); see :func:`cap_limits`
    limits: Limits = field(default_factory=Limits)
    #: ``[limits]`` keys this file set (key, value): a repository may only tighten them
    core: tuple[tuple[str, float], ...] = ()
    #: ``[escalation] dedupe_hours`` (None: not set, the default): a repository may only
    #: lower it
    dedupe_hours: float | None = None
    source: str = "defaults"
    #: why the operator's file was refused ('' when it was read): heal then fails closed
    refused: str = ""

    def repo_allowed(self, root: Path | str) -> bool:
        """Whether ``root`` (resolved) matches a ``[trust] repos`` glob: ``*``, ``?`` and
        ``[...]`` stay inside one path component (``/home/ci/work/*`` is not
        ``/home/ci/work/a/b/c``); only a whole ``**`` component spans any number of them."""
        real = os.path.realpath(root)
        return any(path_glob_match(real, os.path.realpath(g)) or path_glob_match(real, g)
                   for g in self.repos)

    def command_allowed(self, argv: Sequence[str]) -> bool:
        argv = tuple(argv)
        for allowed in self.commands:
            if allowed and allowed[-1] == "*":
                head = allowed[:-1]
                if argv[:len(head)] == head:
                    return True
            elif argv == allowed:
                return True
        return False


def path_glob_match(path: str, glob: str) -> bool:
    """``path`` matches ``glob`` component by component (fnmatch within a component, so
    ``*`` never crosses ``/``); a ``**`` component matches zero or more components."""
    return _match_parts(path.split("/"), glob.split("/"))


def _match_parts(parts: list[str], globs: list[str]) -> bool:
    if not globs:
        return not parts
    head, rest = globs[0], globs[1:]
    if head == "**":
        return any(_match_parts(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_parts(parts[1:], rest)


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(key, value, "must be a list of non-empty strings")
    return tuple(value)


def _absolute(key: str, globs: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse relative entries: resolved against each process's working directory, they would
    register different repositories for a worker, ``heal run`` and ``heal serve``."""
    for i, glob in enumerate(globs):
        if not glob.startswith("/"):
            raise PolicyError(f"{key}[{i}]", glob, "must be an absolute path or glob (starting "
                              "with /), e.g. \"/srv/checkout\" or \"/home/ci/work/*\"")
    return globs


def _argvs(key: str, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise PolicyError(key, value, "must be a list of argv lists, e.g. [[\"make\", \"test\"]]")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str) or not isinstance(item, list) or not item or \
                not all(isinstance(a, str) for a in item):
            raise PolicyError(f"{key}[{i}]", item, "must be a non-empty list of strings "
                              "(argv), never a shell string")
        out.append(tuple(item))
    return tuple(out)


def parse_operator(data: dict[str, Any], source: str) -> OperatorConfig:
    """Raises PolicyError naming the key, the value and the rule."""
    for key in data:
        if key not in TOP_KEYS:
            raise PolicyError(key, data[key], "unknown key in operator configuration; allowed: "
                              + ", ".join(sorted(TOP_KEYS)))
    trust = _table("trust", data.get("trust", {}), {"repos", "commands", "packages", "max_mode"})
    verify = _table("verify", data.get("verify", {}), {"checks"})
    judges = _table("judges", data.get("judges", {}), {"llm", "human_for_risky"})
    limits = core_limits(data)  # the same rules as a repository's [limits]
    escalation = _table("escalation", data.get("escalation", {}), {"dedupe_hours"})
    check_timeout = limits.get("check_timeout_s", DEFAULT_CHECK_TIMEOUT_S)
    dedupe_hours = _non_negative("escalation.dedupe_hours", escalation["dedupe_hours"],
                                 high=MAX_HOURS) if "dedupe_hours" in escalation else None
    return OperatorConfig(
        repos=_absolute("trust.repos", _strings("trust.repos", trust.get("repos", []))),
        commands=_argvs("trust.commands", trust.get("commands", [])),
        packages=_strings("trust.packages", trust.get("packages", [])),
        max_mode=_mode("trust.max_mode", trust.get("max_mode", Mode.AUTO.value)),
        checks=_checks(verify, check_timeout),
        llm=_llm(judges),
        human_for_risky=_bool("judges.human_for_risky", judges.get("human_for_risky", True)),
        limits=parse_limits(data),
        core=tuple((f"limits.{key}", float(value)) for key, value in limits.items()),
        dedupe_hours=dedupe_hours,
        source=source,
    )


def config_path(settings: Settings) -> Path:
    env = os.environ.get(ENV_CONFIG)
    return Path(env).expanduser() if env else settings.home / OPERATOR_FILE


def _check_file(path: Path) -> None:
    check_private(path, "operator configuration", if_tracked=(
        "a repository cannot configure the operator; keep it out of the repository "
        f"(set {ENV_CONFIG} to a file outside it)"))


def named_by_env() -> bool:
    """True when ``HEAL_CONFIG`` names the operator configuration (then it must be usable)."""
    return bool(os.environ.get(ENV_CONFIG))


def load_operator(settings: Settings) -> OperatorConfig:
    """The operator configuration (defaults when the file does not exist and ``HEAL_CONFIG``
    does not name one). Read like a repository's heal.toml (:mod:`pipeline.safefile`: a
    regular file of at most 256 KiB, strict UTF-8, never blocking on a FIFO), except that a
    symbolic link is followed (a Kubernetes ConfigMap is mounted through links).

    Raises:
        ConfigError: the file is missing although named, unsafe, unreadable, not TOML or
            breaks a rule (the message names it).
    """
    path = config_path(settings)
    if not os.path.lexists(path):
        if named_by_env():
            raise ConfigError(f"{ENV_CONFIG}={path}: no such file; point {ENV_CONFIG} at the "
                              "operator configuration or unset it")
        return OperatorConfig()
    _check_file(path)
    try:
        text = read_config_text(path, follow_symlinks=True)
        if text is None:
            raise FileRefused("is a symbolic link to a missing file")
        data = parse_toml(text)
    except FileRefused as exc:
        why = str(exc)
        sep = " " if why.startswith(("is ", "cannot ")) else ": "
        raise ConfigError(f"operator configuration {path}{sep}{why}") from exc
    try:
        return parse_operator(data, str(path))
    except PolicyError as exc:
        raise ConfigError(f"operator configuration {path}: {exc.key} = "
                          f"{toml_value(exc.value)}: {exc.rule}") from exc


#: the mode heal is capped at while the operator's file exists but is refused (fail closed:
#: the most restrictive reading of any operator configuration)
REFUSED_MAX_MODE = Mode.OBSERVE


def refused_config(reason: str) -> OperatorConfig:
    """What heal trusts when the operator's file exists (or ``HEAL_CONFIG`` names one) but
    cannot be used: nothing beyond the defaults, and every mode capped at
    :data:`REFUSED_MAX_MODE`, so a broken file never lifts the operator's ``max_mode``."""
    return OperatorConfig(max_mode=REFUSED_MAX_MODE, source="refused", refused=reason)


def refusal_note(operator: OperatorConfig) -> str:
    """The sentence a decision carries while the operator configuration is refused."""
    return (f"operator configuration refused ({operator.refused}); mode capped at "
            f"{REFUSED_MAX_MODE.value} until it is fixed")


_CACHE: dict[Path, tuple[tuple[int, ...] | None, OperatorConfig]] = {}
_OVERLAYS: dict[Path, list[OperatorConfig]] = {}
_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None if not os.path.lexists(path) else (-1,)
    except OSError:
        return (-2,)
    return (st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid)


def operator_config(settings: Settings) -> OperatorConfig:
    """:func:`load_operator`, re-read when the file changes. An invalid file keeps the last
    valid configuration this process read; without one, heal fails closed
    (:func:`refused_config`: every mode capped at observe) and logs why."""
    path = config_path(settings)
    stamp = _stamp(path)
    with _LOCK:
        cached = _CACHE.get(path)
        if cached is None or cached[0] != stamp:
            try:
                config = load_operator(settings)
            except ConfigError as exc:
                if cached is not None and not cached[1].refused:
                    config = cached[1]  # a valid file this process read: still the operator's
                    log.warning("trust: %s; keeping the last valid one (%s)", exc,
                                config.source)
                else:  # fail closed: a broken file must not lift the operator's max_mode
                    config = refused_config(str(exc))
                    log.warning("trust: %s; mode capped at %s until it is fixed", exc,
                                REFUSED_MAX_MODE.value)
            cached = _CACHE[path] = (stamp, config)
        overlays = list(_OVERLAYS.get(settings.home, ()))
    config = cached[1]
    for extra in overlays:
        config = replace(config, repos=config.repos + extra.repos,
                         commands=config.commands + extra.commands,
                         packages=config.packages + extra.packages)
    return config


def trust_more(settings: Settings, *, repos: Sequence[str] = (),
               commands: Sequence[Sequence[str]] = ()) -> None:
    """Trust more, in this process only, for one HEAL_HOME: for programs that are the
    operator themselves (``heal demo`` registers its sample repository and its checks; shadow
    mode registers its copies of repositories the operator trusts)."""
    extra = OperatorConfig(repos=tuple(str(r) for r in repos),
                           commands=tuple(tuple(c) for c in commands))
    with _LOCK:
        _OVERLAYS.setdefault(settings.home, []).append(extra)


def forget_overlays(settings: Settings) -> None:
    with _LOCK:
        _OVERLAYS.pop(settings.home, None)


@contextmanager
def operator_overlay(settings: Settings, *, repos: Sequence[str] = (),
                     commands: Sequence[Sequence[str]] = ()) -> Iterator[None]:
    """:func:`trust_more` for the duration of a block."""
    trust_more(settings, repos=repos, commands=commands)
    try:
        yield
    finally:
        forget_overlays(settings)


def restrict(policy: Policy, operator: OperatorConfig) -> tuple[Policy, list[str], Mode]:
    """The repository's policy narrowed by the operator's: (effective policy, warnings, the
    highest mode any event may reach under it).

    - mode: at most ``trust.max_mode``;
    - checks: the operator's, plus the repository's whose argv the operator allowed in
      ``trust.commands``; any other repository check is not run, named in a warning, and the
      mode is capped at ``suggest`` (the repository's own verification cannot be honoured);
    - LLM judge: only the operator's (repository files cannot configure one; see policy.py);
    - a human for RISKY fixes: a repository may ask for one, and may waive it only when the
      operator's ``[judges] human_for_risky = false`` allows it (else a warning names it).
    """
    warnings: list[str] = [refusal_note(operator)] if operator.refused else []
    ceiling = operator.max_mode
    mode = lower_mode(policy.mode, ceiling)
    if mode != policy.mode and not operator.refused:
        warnings.append(f"heal.toml: mode = {toml_value(policy.mode.value)}: above the "
                        f"operator's trust.max_mode; using {toml_value(mode.value)}")
    policy, caps = cap_limits(policy, operator)
    warnings += [cap.warning for cap in caps]
    kept: list[Check] = list(operator.checks)
    for i, check in enumerate(policy.checks):
        if operator.command_allowed(check.argv):
            check, why = bounded_check(i, check, policy.check_timeout_s)
            warnings += [why] if why else []
            kept.append(check)
            continue
        argv = toml_value(list(check.argv))
        warnings.append(f"heal.toml: verify.checks[{i}].argv = {argv}: runs a program, "
                        "which only operator configuration may allow (add it to "
                        "[trust] commands or [[verify.checks]] in $HEAL_HOME/heal.toml or "
                        f"{ENV_CONFIG}); not run, and mode capped at suggest")
        ceiling = lower_mode(ceiling, Mode.SUGGEST)
    mode = lower_mode(mode, ceiling)
    llm = LLMJudgeConfig() if policy.llm_opt_out else operator.llm
    human = policy.human_for_risky or operator.human_for_risky
    if human != policy.human_for_risky:
        warnings.append(HUMAN_KEPT)
    return (replace(policy, mode=mode, checks=tuple(kept), llm=llm, human_for_risky=human),
            warnings, ceiling)


def mode_reason(policy: Policy, operator: OperatorConfig, warnings: Sequence[str]) -> str:
    """Why :func:`restrict` put the mode below the repository's: the operator's refused file,
    an unallowed repository check (the cap at ``suggest``) when that is what set the mode in
    force, else ``trust.max_mode``."""
    if operator.refused:
        return refusal_note(operator)
    by_ceiling = lower_mode(policy.mode, operator.max_mode)
    unallowed = [c.name for c in policy.checks if not operator.command_allowed(c.argv)]
    if unallowed and MODE_ORDER.index(by_ceiling) > MODE_ORDER.index(Mode.SUGGEST):
        return ("a repository check is not allowed by the operator (verify.checks "
                f"{toml_value(unallowed)}: its argv is in no [trust] commands), so it is not "
                "run and the mode is capped at suggest")
    return next((w for w in warnings if "trust.max_mode" in w), "")


@dataclass(frozen=True)
class Cap:
    """One guardrail value of a repository's heal.toml the operator's side overrode."""

    key: str
    requested: float
    value: float
    warning: str


def _looser(tighter: str, value: float, bound: float) -> bool:
    return value < bound if tighter == "higher" else value > bound


def bounded_check(i: int, check: Check, in_force: float) -> tuple[Check, str]:
    """A repository's ``verify.checks[i]`` under ``limits.check_timeout_s`` in force
    (``in_force``): one without ``timeout_s`` takes it (the file's default was read before the
    operator's value was known), a longer one is cut to it. Returns the check and, when cut,
    the warning saying why (else "")."""
    if not check.timeout_set:
        return replace(check, timeout_s=in_force), ""
    if check.timeout_s <= in_force:
        return check, ""
    # verification minutes come out of the budget every repository shares
    return replace(check, timeout_s=in_force), (
        f"heal.toml: verify.checks[{i}].timeout_s = {toml_value(_num(check.timeout_s))}: "
        f"longer than limits.check_timeout_s in force ({toml_value(_num(in_force))}), which "
        "bounds a repository check (a longer one belongs in operator configuration: [limits] "
        f"check_timeout_s in $HEAL_HOME/heal.toml or {ENV_CONFIG}); using "
        f"{toml_value(_num(in_force))}")


def cap_limits(policy: Policy, operator: OperatorConfig) -> tuple[Policy, list[Cap]]:
    """The repository's guardrail thresholds under the operator's rule: keys that decide
    shared state (``[breaker]``, ``[lifecycle]``, the ``[execution]`` keys moving a
    workflow's state) are the operator's (or the defaults), a repository's value ignored;
    keys a repository may only tighten (``[budget]``, ``execution.min_auto_confidence`` and
    ``degraded_confidence_bonus``, ``limits.max_diff_lines``, ``max_files``,
    ``dedupe_minutes``, ``check_timeout_s``, ``escalation.dedupe_hours``) keep the
    repository's value when it is at least as strict as the operator's (the default where the
    operator says nothing), else the operator's. Returns the policy in force and one
    :class:`Cap` per overridden value (a repository check's ``timeout_s`` is capped by
    :func:`restrict`)."""
    mine, theirs = policy.limits, operator.limits
    values: dict[str, float] = {}
    from_file: set[str] = set()
    from_operator = set(theirs.from_file)
    caps: list[Cap] = []
    for key in KEYS:
        base = theirs.get(key.path)
        asked = mine.get(key.path)
        values[key.path] = base
        if key.path not in mine.from_file:
            continue
        if key.tighter == "operator":
            why = (f"only operator configuration may set it ([{key.section}] in "
                   f"$HEAL_HOME/heal.toml or {ENV_CONFIG}): it decides state every "
                   "repository shares; ignored")
        elif key.tighter == "rate" and _faster(values, theirs, asked, base):
            why = _faster_why(key.path in theirs.from_file, key.section)
        elif key.tighter not in ("", "rate") and _looser(key.tighter, asked, base):
            why = _looser_why(key.tighter, key.path in theirs.from_file, key.section)
        else:
            values[key.path] = asked
            from_file.add(key.path)
            continue
        from_operator.add(key.path)
        caps.append(Cap(key.path, asked, base, _cap_warning(key.path, asked, why, base)))
    limits = Limits(tuple(values.items()), frozenset(from_file),
                    frozenset(from_operator - from_file))
    core = dict(operator.core)
    changes: dict[str, Any] = {}
    defaults = Policy()
    for path, attr, tighter in CORE_LIMITS:
        base = core.get(path, float(getattr(defaults, attr)))
        asked = float(getattr(policy, attr))
        if path not in policy.limits_from_file:
            asked = base  # the file does not set it: the operator's value or the default
        elif _looser(tighter, asked, base):
            why = _looser_why(tighter, path in core, "limits")
            caps.append(Cap(path, asked, base, _cap_warning(path, asked, why, base)))
            asked = base
        changes[attr] = asked if attr in ("dedupe_minutes", "check_timeout_s") else int(asked)
    escalation = policy.escalation
    base = DEFAULT_DEDUPE_HOURS if operator.dedupe_hours is None else operator.dedupe_hours
    asked = escalation.dedupe_hours if escalation.dedupe_set else base
    if asked > base:
        why = _looser_why("lower", operator.dedupe_hours is not None, "escalation",
                          what="it would silence the same error's notifications for every "
                          "repository (the dedupe is per fingerprint and rule)")
        caps.append(Cap("escalation.dedupe_hours", asked, base,
                        _cap_warning("escalation.dedupe_hours", asked, why, base)))
        asked = base
    changes["escalation"] = replace(escalation, dedupe_hours=asked)
    return replace(policy, limits=limits, **changes), caps


def _faster(values: dict[str, float], theirs: Limits, asked: float, base: float) -> bool:
    """Whether ``budget.automatic_fixes_minutes = asked`` refills the token bucket faster
    than the operator's rate (``values``: the ``budget.automatic_fixes`` in force)."""
    fixes = "budget.automatic_fixes"
    return values[fixes] / asked > theirs.get(fixes) / base


def _faster_why(operator_set: bool, section: str) -> str:
    whose = "the operator's" if operator_set else "the default"
    return (f"refills automatic fixes faster than {whose} rate (budget.automatic_fixes per "
            "budget.automatic_fixes_minutes), and a repository may only slow it (a faster "
            f"rate belongs in operator configuration: [{section}] in $HEAL_HOME/heal.toml or "
            f"{ENV_CONFIG})")


def _looser_why(tighter: str, operator_set: bool, section: str, what: str = "") -> str:
    whose = "the operator's value" if operator_set else "the default"
    may = "raise" if tighter == "higher" else "lower"
    what = f": {what}" if what else ""
    return (f"looser than {whose}{what}, and a repository may only {may} it (a looser value "
            f"belongs in operator configuration: [{section}] in $HEAL_HOME/heal.toml or "
            f"{ENV_CONFIG})")


def _cap_warning(path: str, asked: float, why: str, used: float) -> str:
    return f"heal.toml: {path} = {toml_value(_num(asked))}: {why}; using {toml_value(_num(used))}"


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def governed(settings: Settings, policy: Policy) -> Policy:
    """``policy`` (a repository's) with the guardrail thresholds in force under the operator
    configuration of ``settings`` (:func:`cap_limits`): what every stage reads them from."""
    return cap_limits(policy, operator_config(settings))[0]


#: the warning of a repository asking to waive the human its operator requires
HUMAN_KEPT = ("heal.toml: judges.human_for_risky = false: only operator configuration may "
              "waive the human for RISKY fixes ([judges] human_for_risky = false in "
              f"$HEAL_HOME/heal.toml or {ENV_CONFIG}); a person still approves them")
