"""Fix kinds: parameters validated against their bounds, argv never built from a shell string."""

from __future__ import annotations

import pytest

from pipeline.errors import ParameterError
from pipeline.fixes.params import ParamSpec, validate_params
from pipeline.fixes.render import FixSpec, render_fix
from pipeline.model import Category, FixKind

SPECS = {
    "file": ParamSpec.from_dict("file", {"type": "path"}),
    "port": ParamSpec.from_dict("port", {"type": "int", "min": 1, "max": 65535}),
    "tool": ParamSpec.from_dict("tool", {"allowed": ["npm", "uv"]}),
    "pkg": ParamSpec.from_dict("pkg", {"pattern": "^[a-z][a-z0-9-]*$", "max_length": 20}),
}


def spec(kind: FixKind, template: dict[str, object], names: tuple[str, ...]) -> FixSpec:
    return FixSpec("t/fix", "t.p", kind, Category.SAFE, "title", "why {pkg}", template,
                   {n: SPECS[n] for n in names})


@pytest.mark.parametrize(("name", "value"), [
    ("file", "/etc/passwd"), ("file", "../x"), ("file", "a; rm -rf /"), ("file", "$(id)"),
    ("port", "0"), ("port", "70000"), ("port", "80; ls"), ("tool", "bash"),
    ("pkg", "requests; curl evil"), ("pkg", "-e git+https://x"), ("pkg", "a" * 21),
])
def test_values_outside_their_bounds_are_refused(name: str, value: str) -> None:
    with pytest.raises(ParameterError, match=name):
        validate_params({name: SPECS[name]}, {name: value})


def test_missing_required_parameter_is_refused() -> None:
    with pytest.raises(ParameterError, match="required"):
        validate_params({"port": SPECS["port"]}, {})


def test_command_fills_one_argv_element_per_placeholder() -> None:
    fix = render_fix(spec(FixKind.COMMAND, {"argv": ["pip", "install", "types-{pkg}"]},
                          ("pkg",)), {"pkg": "requests"})
    assert fix["rendered"] == {"argv": ["pip", "install", "types-requests"]}
    assert fix["explanation"] == "why requests" and fix["category"] == "SAFE"


def test_command_variants_by_allowed_value() -> None:
    choices = {"npm": ["npm", "i"], "uv": ["uv", "lock"]}
    template = {"argv_by": {"param": "tool", "choices": choices}}
    fix = render_fix(spec(FixKind.COMMAND, template, ("tool",)), {"tool": "uv"})
    assert fix["rendered"]["argv"] == ["uv", "lock"]


def test_playbook_steps_have_timeouts() -> None:
    steps = {"diagnosis": [{"name": "d", "argv": ["ss", "-ltn"], "timeout_s": 5}],
             "primary": [{"name": "p", "argv": ["fuser", "-k", "{port}/tcp"]}],
             "validate": [{"name": "v", "action": "rerun", "args": {"attempts": 1}}]}
    fix = render_fix(spec(FixKind.PLAYBOOK, {"steps": steps}, ("port",)), {"port": "8080"})
    rendered = fix["rendered"]["steps"]
    assert rendered["primary"] == [{"name": "p", "argv": ["fuser", "-k", "8080/tcp"],
                                    "timeout_s": 120.0}]
    assert rendered["fallback"] == [] and rendered["validate"][0]["action"] == "rerun"


def test_escalate_never_fails_on_missing_parameters() -> None:
    """A value not extracted (a tier-2 match has no parameters) reads as a noun, never as a
    raw placeholder: the message is for a person."""
    fix = render_fix(spec(FixKind.ESCALATE, {"message": "resolve {file}"}, ("file",)), {})
    assert fix["rendered"] == {"message": "resolve the file"}
    fix = render_fix(spec(FixKind.ESCALATE, {"message": "{file} failed. {file} again"},
                          ("file",)), {})
    assert fix["rendered"] == {"message": "The file failed. The file again"}
