"""Numeric settings from the environment: one checked parser for every ``HEAL_*`` number.

A number is taken only as written in plain ASCII decimal digits (``300``, ``2.5``), finite and
inside its documented range; anything else (``inf``, ``1e300``, ``nan``, ``-3``, ``abc``, a
space around the digits) is refused when the command starts (exit 2) with the variable, the
value as written and the allowed range. A silent fallback or clamp hid the typo; an infinite
interval killed the lifecycle timer thread with a bare traceback (QA s19b, defect 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.errors import ConfigError

#: a whole number: ASCII digits without a leading zero (``int()`` alone also takes ``3_0``,
#: ``+3``, ``03``, `` 3`` and other scripts' digits such as ``٣``)
_WHOLE = re.compile(r"[1-9][0-9]{0,8}")
#: a decimal number: ASCII digits, an optional fraction; no sign, exponent, inf or nan
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,8})(?:\.[0-9]{1,6})?")


@dataclass(frozen=True)
class NumberSetting:
    """One numeric environment variable: its range, unit, default and what it means."""

    variable: str
    low: float
    high: float
    default: float
    whole: bool = False
    unit: str = ""
    #: said after the range in a refusal (what the value does)
    meaning: str = ""

    def allowed(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        unit = f" {self.unit}" if self.unit else ""
        return (f"{kind}{unit} from {_show(self.low)} to {_show(self.high)} in plain ASCII "
                "digits (no sign or exponent), with no space or newline around it")

    def parse(self, value: str | None) -> float:
        """The value (the default when unset or empty).

        Raises:
            ConfigError: ``value`` is not written as :meth:`allowed` says, or is out of range.
        """
        if not value:
            return self.default
        form = _WHOLE if self.whole else _DECIMAL
        number = float(value) if form.fullmatch(value) else None
        if number is None or not self.low <= number <= self.high:
            meaning = f" ({self.meaning})" if self.meaning else ""
            raise ConfigError(f"{self.variable}={value!r}: must be {self.allowed()}{meaning}")
        return number

    def read(self, env: Mapping[str, str]) -> float:
        """:meth:`parse` of the variable in ``env``. Raises: ConfigError."""
        return self.parse(env.get(self.variable))


def _show(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


PARTITIONS = NumberSetting(
    "HEAL_PARTITIONS", 1, 1024, 1, whole=True,
    meaning="1 = one unpartitioned stream per stage")
SWEEP_INTERVAL_S = NumberSetting(
    "HEAL_SWEEP_INTERVAL_S", 1, 86400, 300.0, unit="of seconds",
    meaning="how often a lifecycle worker runs the deprecation and time-based escalation "
            "sweep; 300 = every 5 minutes")

#: every numeric HEAL_* variable, checked by ``Settings.from_env`` when a command starts
ALL = (PARTITIONS, SWEEP_INTERVAL_S)
