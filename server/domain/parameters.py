"""One dimension of a search space: its kind, range or values, its condition, and the
checks that keep every value exact on the wire and in storage."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import (
    MAX_CHOICE_LENGTH,
    MAX_CHOICES,
    MAX_EXACT_INTEGER,
    MAX_MAGNITUDE,
    has_control_characters,
    listed,
    shown,
)

ParamValue = float | int | str
Params = dict[str, ParamValue]


class ParameterKind(str, Enum):
    FLOAT = "float"
    INTEGER = "int"
    CATEGORICAL = "categorical"
    DISCRETE = "discrete"


@dataclass(frozen=True)
class Condition:
    """A parameter is active only when its parent's value satisfies this condition."""

    parent: str
    values: tuple[ParamValue, ...] = ()
    min_value: float | None = None
    max_value: float | None = None

    def holds(self, parent_value: ParamValue) -> bool:
        if self.values and parent_value not in self.values:
            return False
        if self.min_value is not None or self.max_value is not None:
            if isinstance(parent_value, str):
                return False
            if self.min_value is not None and parent_value < self.min_value:
                return False
            if self.max_value is not None and parent_value > self.max_value:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parent": self.parent}
        if self.values:
            out["values"] = list(self.values)
        if self.min_value is not None:
            out["min"] = self.min_value
        if self.max_value is not None:
            out["max"] = self.max_value
        return out


@dataclass(frozen=True)
class ParameterSpec:
    """One dimension. `low`/`high` for numeric ranges; `choices` for categorical/discrete."""

    name: str
    kind: ParameterKind
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[ParamValue, ...] = ()
    condition: Condition | None = None

    @property
    def is_numeric(self) -> bool:
        return self.kind is not ParameterKind.CATEGORICAL

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind.value}
        if self.kind in (ParameterKind.FLOAT, ParameterKind.INTEGER):
            lo: float | int = self.low
            hi: float | int = self.high
            if self.kind is ParameterKind.INTEGER:
                lo, hi = int(self.low), int(self.high)
            out.update({"min": lo, "max": hi, "scale": "log" if self.log else "linear"})
        else:
            out["values"] = list(self.choices)
        if self.condition is not None:
            out["condition"] = self.condition.to_dict()
        return out

    def validate_value(self, value: Any) -> ParamValue:
        """Returns `value` in its canonical type (int for int parameters and for discrete
        ones whose values are whole numbers), or raises InvalidArgument saying why not."""
        where = f"parameter {self.name!r}"
        if self.kind is ParameterKind.CATEGORICAL:
            if not isinstance(value, str):
                raise InvalidArgument(f"{where} is categorical: give one of {listed(self.choices)}")
            if value not in self.choices:
                raise InvalidArgument(
                    f"{where}: {shown(value)} is not one of {listed(self.choices)}"
                )
            return value
        if isinstance(value, str) or isinstance(value, bool) or value is None:
            raise InvalidArgument(f"{where} is numeric, got {shown(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"{where} is numeric, got {shown(value)}") from None
        if not math.isfinite(number):
            raise InvalidArgument(f"{where}: value must be finite, got {shown(value)}")
        if self.kind is ParameterKind.INTEGER:
            if number != round(number):
                raise InvalidArgument(f"{where} is an integer, got {shown(value)}")
            if not self.low <= number <= self.high:
                raise InvalidArgument(
                    f"{where}: {int(number)} is outside [{int(self.low)}, {int(self.high)}]"
                )
            return int(round(number))
        if self.kind is ParameterKind.DISCRETE:
            for choice in self.choices:
                if _same_discrete(number, float(choice)):
                    return choice
            raise InvalidArgument(f"{where}: {shown(value)} is not one of {listed(self.choices)}")
        if not self.low <= number <= self.high:
            raise InvalidArgument(f"{where}: {number!r} is outside [{self.low}, {self.high}]")
        return number


# A reported or added value matches a discrete value within these tolerances (a value
# that went through text or another language's doubles); values of one parameter must
# be farther apart than that.
DISCRETE_REL_TOL = 1e-9
DISCRETE_ABS_TOL = 1e-12


def _same_discrete(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=DISCRETE_REL_TOL, abs_tol=DISCRETE_ABS_TOL)


def _check_range(where: str, p: ParameterSpec) -> None:
    """Bounds that round-trip exactly and leave a usable span."""
    if p.kind is ParameterKind.INTEGER:
        for bound in (p.low, p.high):
            if not math.isfinite(bound) or bound != int(bound):
                raise InvalidArgument(f"{where}: integer bounds must be whole numbers")
            if abs(bound) > MAX_EXACT_INTEGER:
                raise InvalidArgument(
                    f"{where}: integer bounds must be within ±{MAX_EXACT_INTEGER:,} (2^53 - 1), "
                    f"got {bound:.0f}"
                )
    else:
        for bound in (p.low, p.high):
            if not math.isfinite(bound) or abs(bound) > MAX_MAGNITUDE:
                raise InvalidArgument(
                    f"{where}: min and max must be finite numbers within ±{MAX_MAGNITUDE:g}"
                )
    if p.low >= p.high:
        raise InvalidArgument(f"{where}: min ({p.low:g}) must be less than max ({p.high:g})")
    if p.log and p.low <= 0:
        raise InvalidArgument(
            f"{where}: log scale needs min > 0 (got {p.low:g}); use a linear scale "
            "or a positive minimum"
        )
    middle = p.low + (p.high - p.low) / 2
    if not p.low < middle < p.high:
        raise InvalidArgument(
            f"{where}: the range [{p.low!r}, {p.high!r}] is too narrow to hold distinct values"
        )


def check_parameter(p: ParameterSpec) -> ParameterSpec:
    where = f"parameter {p.name!r}"
    if p.kind in (ParameterKind.FLOAT, ParameterKind.INTEGER):
        _check_range(where, p)
        # -0.0 is 0.0: the same range must make the same spec.
        return replace(p, low=p.low + 0.0, high=p.high + 0.0)
    if not p.choices:
        raise InvalidArgument(f"{where}: give at least one value")
    if len(p.choices) > MAX_CHOICES:
        raise InvalidArgument(f"{where}: at most {MAX_CHOICES:,} values")
    if len(set(p.choices)) != len(p.choices):
        dupes = sorted({str(v) for v in p.choices if p.choices.count(v) > 1})
        raise InvalidArgument(f"{where}: duplicate values {listed(dupes)}")
    if p.kind is ParameterKind.CATEGORICAL:
        for v in p.choices:
            if (
                not isinstance(v, str)
                or not v
                or len(v) > MAX_CHOICE_LENGTH
                or has_control_characters(v)
            ):
                raise InvalidArgument(
                    f"{where}: categorical values must be strings of 1-{MAX_CHOICE_LENGTH} "
                    f"characters without control characters, got {shown(v)}"
                )
        return p
    numbers = [float(v) for v in p.choices]
    for v in numbers:
        if not math.isfinite(v) or abs(v) > MAX_MAGNITUDE:
            raise InvalidArgument(
                f"{where}: discrete values must be finite numbers within ±{MAX_MAGNITUDE:g}"
            )
    ordered = sorted(numbers)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if _same_discrete(a, b):
            raise InvalidArgument(
                f"{where}: values {a!r} and {b!r} are too close to tell apart (a value "
                f"matches within a relative {DISCRETE_REL_TOL:g} or an absolute "
                f"{DISCRETE_ABS_TOL:g})"
            )
    # Whole numbers within the exact range come back as ints, as a user who writes
    # [16, 32, 64] means them (a batch size).
    whole = all(v == int(v) and abs(v) <= MAX_EXACT_INTEGER for v in numbers)
    choices: tuple[ParamValue, ...] = tuple(int(v) if whole else v for v in sorted(numbers))
    return ParameterSpec(name=p.name, kind=p.kind, choices=choices, condition=p.condition)


def check_condition(p: ParameterSpec, parent: ParameterSpec | None) -> None:
    c = p.condition
    assert c is not None
    where = f"parameter {p.name!r}"
    if parent is None:
        raise InvalidArgument(f"{where}: condition on unknown parent {shown(c.parent)}")
    if not c.values and c.min_value is None and c.max_value is None:
        raise InvalidArgument(f"{where}: the condition on {c.parent!r} needs values or a range")
    for bound in (c.min_value, c.max_value):
        if bound is not None and (not math.isfinite(bound) or abs(bound) > MAX_MAGNITUDE):
            raise InvalidArgument(f"{where}: condition bounds must be finite numbers")
    if c.min_value is not None and c.max_value is not None and c.min_value > c.max_value:
        raise InvalidArgument(
            f"{where}: the condition's min ({c.min_value:g}) is above its max ({c.max_value:g})"
        )
    if (c.min_value is not None or c.max_value is not None) and not parent.is_numeric:
        raise InvalidArgument(
            f"{where}: a range condition needs a numeric parent, "
            f"{c.parent!r} is categorical; list its values instead"
        )
    if len(c.values) > MAX_CHOICES:
        raise InvalidArgument(f"{where}: at most {MAX_CHOICES:,} condition values")
    for v in c.values:
        parent.validate_value(v)
