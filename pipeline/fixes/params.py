"""Parameters of a fix, each validated against declared bounds before it reaches a template.

A parameter comes from the error text (a named group of a detection rule), from a constant a
rule sets, or from another parameter through a lookup table (``map``). Values that break the
bounds raise :class:`ParameterError`; a command is never built from unvalidated text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError, ParameterError
from pipeline.spelling import spelled, spelled_list

TYPES = ("str", "int", "float", "path")
#: a path parameter is relative, inside the repository, and free of shell metacharacters
_SAFE_PATH = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[\w@%+=:,./-]+$")
_MAX_LENGTH_DEFAULT = 200


@dataclass(frozen=True)
class ParamSpec:
    """Declared bounds of one parameter (from the seeds' ``params`` mapping)."""

    name: str
    type: str = "str"
    pattern: str | None = None
    allowed: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_length: int = _MAX_LENGTH_DEFAULT
    default: Any = None
    required: bool = True
    #: derive the value from another parameter ...
    source: str | None = None
    #: ... keeping only its first dotted segment (``yaml.loader`` -> ``yaml``) ...
    first_segment: bool = False
    #: ... then translating it through this table (``yaml`` -> ``PyYAML``)
    mapping: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any]) -> ParamSpec:
        """Build from YAML.

        Raises:
            ConfigError: unknown type, a string parameter without a pattern or allowed
                values, or a pattern that does not compile.
        """
        kind = str(raw.get("type", "str"))
        if kind not in TYPES:
            raise ConfigError(f"param {name}: type {spelled(raw.get('type'))} is not one of "
                              f"{', '.join(TYPES)}")
        pattern = raw.get("pattern")
        allowed = tuple(str(v) for v in raw.get("allowed", ()))
        if kind == "str" and not pattern and not allowed:
            raise ConfigError(f"param {name}: a str parameter needs a pattern or allowed values")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"param {name}: bad pattern {spelled(pattern)}: {exc}") from exc
        return cls(
            name=name,
            type=kind,
            pattern=pattern,
            allowed=allowed,
            min=raw.get("min"),
            max=raw.get("max"),
            max_length=int(raw.get("max_length", _MAX_LENGTH_DEFAULT)),
            default=raw.get("default"),
            required=bool(raw.get("required", True)),
            source=raw.get("from"),
            first_segment=bool(raw.get("first_segment", False)),
            mapping={str(k): str(v) for k, v in (raw.get("map") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for key in ("pattern", "min", "max", "default", "source"):
            value = getattr(self, key)
            if value is not None:
                out["from" if key == "source" else key] = value
        if self.allowed:
            out["allowed"] = list(self.allowed)
        if self.first_segment:
            out["first_segment"] = True
        if self.mapping:
            out["map"] = dict(self.mapping)
        out["max_length"] = self.max_length
        out["required"] = self.required
        return out

    def resolve(self, raw: Mapping[str, Any]) -> Any:
        """The raw value for this parameter: extracted, derived, or the default."""
        value = raw.get(self.source) if self.source else raw.get(self.name)
        if value is not None and self.source:
            value = str(value)
            if self.first_segment:
                value = value.split(".", 1)[0]
            value = self.mapping.get(value, value)
        return self.default if value is None else value

    def check(self, value: Any) -> str | int | float:
        """Validate one value against the bounds and return it typed.

        Raises:
            ParameterError: the value breaks a bound; the message names the rule.
        """
        text = str(value)
        if len(text) > self.max_length:
            raise ParameterError(f"{self.name}: {len(text)} characters, at most {self.max_length}")
        if self.allowed and text not in self.allowed:
            raise ParameterError(f"{self.name}: {spelled(text)} is not one of "
                                 f"{spelled_list(self.allowed)}")
        if self.pattern and not re.fullmatch(self.pattern, text):
            raise ParameterError(f"{self.name}: {text!r} does not match {self.pattern!r}")
        if self.type == "path" and not _SAFE_PATH.match(text):
            raise ParameterError(f"{self.name}: {text!r} is not a plain relative path")
        if self.type in ("int", "float"):
            return self._check_number(text)
        return text

    def _check_number(self, text: str) -> int | float:
        try:
            number: int | float = int(text) if self.type == "int" else float(text)
        except ValueError as exc:
            raise ParameterError(f"{self.name}: {text!r} is not a {self.type}") from exc
        if self.min is not None and number < self.min:
            raise ParameterError(f"{self.name}: {number} is below the minimum {self.min}")
        if self.max is not None and number > self.max:
            raise ParameterError(f"{self.name}: {number} is above the maximum {self.max}")
        return number


def validate_params(
    specs: Mapping[str, ParamSpec], raw: Mapping[str, Any]
) -> dict[str, str | int | float]:
    """Resolve and validate every declared parameter.

    Raises:
        ParameterError: a required parameter is missing or any value breaks its bounds.
    """
    out: dict[str, str | int | float] = {}
    for name, spec in specs.items():
        value = spec.resolve(raw)
        if value is None:
            if spec.required:
                raise ParameterError(f"{name}: required parameter missing from the error text")
            continue
        try:
            out[name] = spec.check(value)
        except ParameterError:
            if spec.required:
                raise
            # an optional value outside its bounds is dropped; a template that needs it
            # then fails to render, naming the parameter
    return out
