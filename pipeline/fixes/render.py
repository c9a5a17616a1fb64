"""Render a declared fix into the concrete ``fix`` dict the validate/apply stages consume.

Kinds (``pipeline.model.FixKind``):
- ``command``: ``argv`` templates; every ``{name}`` fills exactly one argv element with a value
  already validated against its bounds. Never a shell string.
- ``diff``: a unified-diff template filled from the validated parameters.
- ``playbook``: ``diagnosis``/``primary``/``fallback``/``validate`` steps, each with a timeout.
  The apply stage runs the validate steps after each primary (then fallback) step and stops
  at the first that validates, so "wait, then re-run" sequences express retry with backoff.
- ``escalate``: no safe mechanical fix; a message telling a human what to do and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError, ParameterError
from pipeline.fixes.params import ParamSpec, validate_params
from pipeline.model import Category, FixKind, LifecycleState
from pipeline.spelling import spelled, spelled_list

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
#: ``[[ in {file} line {line}]]`` in a message for a person: said only when every parameter
#: it names was extracted, left out otherwise (no "the file line the line")
OPTIONAL = re.compile(r"\[\[([^\[\]\n]{0,500})\]\]")
STEP_PHASES = ("diagnosis", "primary", "fallback", "validate")
DEFAULT_STEP_TIMEOUT_S = 120.0
MAX_STEP_TIMEOUT_S = 3600.0
#: actions a playbook may name instead of an argv; the apply stage implements them
#: (pipeline/apply/actions.py; ``rerun`` re-runs the failing command)
BUILTIN_ACTIONS = ("rerun", "sleep", "remove_stale_lock", "chmod_exec", "file_exists",
                   "file_absent")

#: ``package_manager:`` of a command fix: the ecosystems whose install the repository's own
#: manager runs (pipeline.validate.manager, which keeps the fixed set of managers)
PACKAGE_MANAGER_ECOSYSTEMS = ("node", "bun", "python")

Values = Mapping[str, str | int | float]


@dataclass(frozen=True)
class FixSpec:
    """One declared fix (from the seeds or the ``fixes`` table)."""

    id: str
    pattern_id: str
    kind: FixKind
    category: Category
    title: str
    explanation: str
    template: Mapping[str, Any]
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    state: LifecycleState = LifecycleState.ACTIVE

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pattern_id": self.pattern_id,
            "kind": self.kind.value,
            "category": self.category.value,
            "state": self.state.value,
            "title": self.title,
            "explanation": self.explanation,
            "template": dict(self.template),
        }

    def check_template(self) -> None:
        """Refuse a template naming an undeclared parameter or missing its kind's fields.

        Raises:
            ConfigError: names the fix, the field and what to change.
        """
        # a taught fix (``literal: true``) is used as written: braces in a command or a diff
        # are the program's own text, never placeholders
        names = set() if self.template.get("literal") else set(
            PLACEHOLDER.findall(repr(dict(self.template))))
        unknown = names - set(self.params)
        if unknown and self.kind is not FixKind.ESCALATE:
            raise ConfigError(f"fix {self.id}: template uses undeclared params "
                              f"{spelled_list(sorted(unknown))}; declare them under params:")
        needed = {
            FixKind.COMMAND: ("argv", "argv_by"),
            FixKind.DIFF: ("diff",),
            FixKind.PLAYBOOK: ("steps",),
            FixKind.ESCALATE: ("message",),
        }[self.kind]
        if not any(key in self.template for key in needed):
            raise ConfigError(f"fix {self.id}: a {self.kind.value} fix needs {' or '.join(needed)}")
        if self.kind is FixKind.PLAYBOOK:
            check_steps(self.id, self.template["steps"])
        if "scope_of" in self.template:
            self._check_scope()
        manager = self.template.get("package_manager")
        if manager is not None and (self.kind is not FixKind.COMMAND
                                    or manager not in PACKAGE_MANAGER_ECOSYSTEMS):
            raise ConfigError(f"fix {self.id}: package_manager must be one of "
                              f"{', '.join(PACKAGE_MANAGER_ECOSYSTEMS)} on a command fix (the "
                              "repository then picks that ecosystem's installer), got "
                              f"{spelled(manager)}")

    def _check_scope(self) -> None:
        """``scope_of`` (pipeline.fixes.scope): tools' words, and an argv ending in ``.``."""
        tools = self.template["scope_of"]
        argv = self.template.get("argv")
        if (self.kind is not FixKind.COMMAND or not isinstance(argv, list) or not argv
                or argv[-1] != "."):
            raise ConfigError(f"fix {self.id}: scope_of needs a command fix whose argv ends "
                              "with '.' (the operand replaced by the checked paths)")
        if not isinstance(tools, list) or not tools or not all(
                isinstance(t, list) and t and all(isinstance(w, str) and w for w in t)
                for t in tools):
            raise ConfigError(f"fix {self.id}: scope_of must be a list of commands, each a "
                              f"list of words such as [ruff, check], got {spelled(tools)}")


def check_steps(fix_id: str, steps: Any) -> None:
    """Refuse a playbook's ``steps`` that cannot run (raises ConfigError naming ``fix_id``).

    Each step is named by its place (``steps.primary[2]``, counted from 0 as in YAML
    tools) and, when it has one, its name; the message says what to add."""
    if not isinstance(steps, Mapping):
        raise ConfigError(f"fix {fix_id}: steps must be a mapping of phases "
                          f"({', '.join(STEP_PHASES)}) to lists of steps")
    if not steps.get("primary"):
        raise ConfigError(f"fix {fix_id}: a playbook needs at least one primary step "
                          "(steps.primary: a list of steps)")
    for phase, items in steps.items():
        if phase not in STEP_PHASES:
            raise ConfigError(f"fix {fix_id}: unknown playbook phase steps.{phase}; the phases "
                              f"are {', '.join(STEP_PHASES)}")
        if not isinstance(items, list):
            raise ConfigError(f"fix {fix_id}: steps.{phase} must be a list of steps, got "
                              f"{spelled(items)}")
        for index, step in enumerate(items):
            where = f"steps.{phase}[{index}]"
            if not isinstance(step, Mapping):
                raise ConfigError(f"fix {fix_id}: {where} must be a mapping (name, argv or "
                                  f"action, timeout_s), got {spelled(step)}")
            if step.get("name"):
                where += f" ({spelled(step['name'])})"
            if "argv" not in step and step.get("action") not in BUILTIN_ACTIONS:
                what = ("has neither argv nor action" if "action" not in step else
                        f"names an unknown action {spelled(step.get('action'))}")
                raise ConfigError(
                    f"fix {fix_id}: {where} {what}; add argv: [program, arguments...] or "
                    f"action: one of {', '.join(BUILTIN_ACTIONS)}")
            raw_timeout = step.get("timeout_s", DEFAULT_STEP_TIMEOUT_S)
            try:
                timeout = float(raw_timeout)
            except (TypeError, ValueError):
                timeout = float("nan")
            if not 0 < timeout <= MAX_STEP_TIMEOUT_S:
                raise ConfigError(f"fix {fix_id}: {where} timeout_s {spelled(raw_timeout)} "
                                  f"is outside (0, {MAX_STEP_TIMEOUT_S:g}]; give seconds")


def _fill(text: str, values: Values, strict: bool = True) -> str:
    """``text`` with its ``{name}`` placeholders filled from ``values``; with ``strict``
    False (a message for a person) an optional segment (``[[ in {file}]]``) naming a value
    not extracted is left out, and such a value elsewhere reads as a noun, ``the package``
    (``The package`` where a sentence starts), never as a raw ``<package>`` (as before)."""
    if not strict:
        text = OPTIONAL.sub(lambda m: m.group(1) if all(
            n in values for n in PLACEHOLDER.findall(m.group(1))) else "", text)

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return str(values[name])
        if strict:
            raise ParameterError(f"template needs parameter {name!r}, which was not extracted")
        noun = "the " + name.replace("_", " ")
        starts = match.start() == 0 or text[max(0, match.start() - 2):match.start()] == ". "
        return noun.capitalize() if starts else noun

    return PLACEHOLDER.sub(sub, text)


def _fill_any(value: Any, values: Values) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, list):
        return [_fill_any(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill_any(v, values) for k, v in value.items()}
    return value


def _render_argv(template: Mapping[str, Any], values: Values) -> list[str]:
    if template.get("literal"):
        return [str(part) for part in template.get("argv") or []]
    argv = template.get("argv")
    by = template.get("argv_by")
    if by is not None:
        key = str(values.get(by["param"], ""))
        if key not in by["choices"]:
            raise ParameterError(f"{by['param']}: no command declared for {key!r}")
        argv = by["choices"][key]
    return [_fill(str(part), values) for part in argv or []]


def _render_steps(steps: Mapping[str, Any], values: Values) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for phase in STEP_PHASES:
        rendered = []
        for step in steps.get(phase, []):
            item: dict[str, Any] = {"name": step.get("name", phase)}
            if "argv" in step:
                item["argv"] = [_fill(str(p), values) for p in step["argv"]]
            else:
                item["action"] = step["action"]
                item["args"] = _fill_any(dict(step.get("args", {})), values)
            item["timeout_s"] = float(step.get("timeout_s", DEFAULT_STEP_TIMEOUT_S))
            rendered.append(item)
        out[phase] = rendered
    return out


def render_fix(spec: FixSpec, raw_params: Mapping[str, Any]) -> dict[str, Any]:
    """The concrete fix dict for a CandidateEvent.

    Raises:
        ParameterError: a parameter is missing or outside its declared bounds (for every kind
            but ``escalate``, which shows what it has and never fails on parameters).
    """
    if spec.kind is FixKind.ESCALATE:
        try:
            values: Values = validate_params(spec.params, raw_params)
        except ParameterError:
            values = {}
        rendered: dict[str, Any] = {"message": _fill(spec.template["message"], values, False)}
    else:
        values = validate_params(spec.params, raw_params)
        if spec.kind is FixKind.COMMAND:
            rendered = {"argv": _render_argv(spec.template, values)}
            if "timeout_s" in spec.template:
                rendered["timeout_s"] = float(spec.template["timeout_s"])
            if spec.template.get("package_manager"):  # the repository picks the installer
                rendered["package_manager"] = str(spec.template["package_manager"])
            if spec.template.get("scope_of"):  # acts on what the failing step checked
                rendered["scope_of"] = [list(t) for t in spec.template["scope_of"]]
            if spec.template.get("verify_in_worktree"):  # taught: verified before offered
                rendered["verify_in_worktree"] = True
                if spec.template.get("taught_in"):  # (where: see validate.verify)
                    rendered["taught_in"] = str(spec.template["taught_in"])
        elif spec.kind is FixKind.DIFF:
            diff = str(spec.template["diff"])
            rendered = {"diff": diff if spec.template.get("literal") else _fill(diff, values)}
            rendered.update({k: v for k, v in spec.template.items()
                             if k not in ("diff", "literal")})
        else:
            rendered = {"steps": _render_steps(spec.template["steps"], values)}
    return {
        "id": spec.id,
        "pattern_id": spec.pattern_id,
        "kind": spec.kind.value,
        "category": spec.category.value,
        "state": spec.state.value,
        "title": spec.title,
        "explanation": _fill(spec.explanation, values, strict=False),
        "params": dict(values),
        "rendered": rendered,
    }
