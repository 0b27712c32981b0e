"""The search space: parameter kinds, conditions, validation of specs and of configurations.

Plain Python, no gRPC or SQL: the servicer converts protobuf to these objects, the
algorithms read them, the storage keeps their JSON form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tunewire.server.domain.errors import InvalidArgument

ParamValue = float | int | str
Params = dict[str, ParamValue]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_PARAMETERS = 1000
MAX_CHOICES = 10_000


class ParameterKind(str, Enum):
    FLOAT = "float"
    INTEGER = "int"
    CATEGORICAL = "categorical"
    DISCRETE = "discrete"


def check_name(what: str, name: str) -> None:
    """Raises InvalidArgument unless `name` is a valid study, parameter or metric name."""
    if not NAME_PATTERN.match(name or ""):
        raise InvalidArgument(
            f"{what} name {name!r} is invalid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


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
        """Returns `value` in its canonical type, or raises InvalidArgument saying why not."""
        where = f"parameter {self.name!r}"
        if self.kind is ParameterKind.CATEGORICAL:
            if not isinstance(value, str):
                raise InvalidArgument(f"{where} is categorical: give one of {list(self.choices)}")
            if value not in self.choices:
                raise InvalidArgument(f"{where}: {value!r} is not one of {list(self.choices)}")
            return value
        if isinstance(value, str) or isinstance(value, bool) or value is None:
            raise InvalidArgument(f"{where} is numeric, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(f"{where}: value must be finite, got {value!r}")
        if self.kind is ParameterKind.INTEGER:
            if number != round(number):
                raise InvalidArgument(f"{where} is an integer, got {value!r}")
            if not self.low <= number <= self.high:
                raise InvalidArgument(
                    f"{where}: {int(number)} is outside [{int(self.low)}, {int(self.high)}]"
                )
            return int(round(number))
        if self.kind is ParameterKind.DISCRETE:
            for choice in self.choices:
                if math.isclose(number, float(choice), rel_tol=1e-9, abs_tol=1e-12):
                    return float(choice)
            raise InvalidArgument(f"{where}: {value!r} is not one of {list(self.choices)}")
        if not self.low <= number <= self.high:
            raise InvalidArgument(f"{where}: {number!r} is outside [{self.low}, {self.high}]")
        return number


def _parameter_from_dict(raw: Mapping[str, Any]) -> ParameterSpec:
    name = str(raw.get("name", ""))
    check_name("parameter", name)
    kind_text = str(raw.get("type", "")).lower()
    aliases = {"integer": "int", "choice": "categorical", "ordinal": "discrete", "real": "float"}
    kind_text = aliases.get(kind_text, kind_text)
    try:
        kind = ParameterKind(kind_text)
    except ValueError:
        raise InvalidArgument(
            f"parameter {name!r}: unknown type {raw.get('type')!r}; "
            "use float, int, categorical or discrete"
        ) from None
    condition = None
    if raw.get("condition"):
        c = raw["condition"]
        values = tuple(c.get("values", ()) or ())
        condition = Condition(
            parent=str(c.get("parent", "")),
            values=values,
            min_value=None if c.get("min") is None else float(c["min"]),
            max_value=None if c.get("max") is None else float(c["max"]),
        )
    scale = str(raw.get("scale", "linear") or "linear").lower()
    if scale not in ("linear", "log"):
        raise InvalidArgument(f"parameter {name!r}: scale must be 'linear' or 'log', got {scale!r}")
    if kind in (ParameterKind.FLOAT, ParameterKind.INTEGER):
        if "min" not in raw or "max" not in raw:
            raise InvalidArgument(f"parameter {name!r}: give both 'min' and 'max'")
        return ParameterSpec(
            name=name,
            kind=kind,
            low=float(raw["min"]),
            high=float(raw["max"]),
            log=scale == "log",
            condition=condition,
        )
    choices = tuple(raw.get("values", ()) or ())
    if kind is ParameterKind.DISCRETE:
        try:
            choices = tuple(float(v) for v in choices)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"parameter {name!r}: discrete values must be numbers, got {list(choices)}"
            ) from None
    else:
        choices = tuple(str(v) for v in choices)
    return ParameterSpec(name=name, kind=kind, choices=choices, condition=condition)


def _check_parameter(p: ParameterSpec) -> ParameterSpec:
    where = f"parameter {p.name!r}"
    if p.kind in (ParameterKind.FLOAT, ParameterKind.INTEGER):
        if not (math.isfinite(p.low) and math.isfinite(p.high)):
            raise InvalidArgument(f"{where}: min and max must be finite")
        if p.kind is ParameterKind.INTEGER and (p.low != int(p.low) or p.high != int(p.high)):
            raise InvalidArgument(f"{where}: integer bounds must be whole numbers")
        if p.low >= p.high:
            raise InvalidArgument(f"{where}: min ({p.low:g}) must be less than max ({p.high:g})")
        if p.log and p.low <= 0:
            raise InvalidArgument(
                f"{where}: log scale needs min > 0 (got {p.low:g}); use a linear scale "
                "or a positive minimum"
            )
        return p
    if not p.choices:
        raise InvalidArgument(f"{where}: give at least one value")
    if len(p.choices) > MAX_CHOICES:
        raise InvalidArgument(f"{where}: at most {MAX_CHOICES} values")
    if len(set(p.choices)) != len(p.choices):
        dupes = sorted({str(v) for v in p.choices if p.choices.count(v) > 1})
        raise InvalidArgument(f"{where}: duplicate values {dupes}")
    if p.kind is ParameterKind.CATEGORICAL:
        if any(v == "" for v in p.choices):
            raise InvalidArgument(f"{where}: categorical values must not be empty strings")
        return p
    if not all(math.isfinite(float(v)) for v in p.choices):
        raise InvalidArgument(f"{where}: discrete values must be finite")
    return ParameterSpec(
        name=p.name,
        kind=p.kind,
        choices=tuple(sorted(float(v) for v in p.choices)),
        condition=p.condition,
    )


@dataclass(frozen=True)
class SearchSpace:
    """Parameters in an order where every parent comes before its children."""

    parameters: tuple[ParameterSpec, ...]
    _by_name: dict[str, ParameterSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parameters})

    @classmethod
    def build(cls, parameters: Sequence[ParameterSpec]) -> SearchSpace:
        """Validates the parameters and orders them parents-first.

        Raises:
            InvalidArgument: bad ranges or choices, duplicate names, unknown parents, cycles.
        """
        if not parameters:
            raise InvalidArgument("the search space needs at least one parameter")
        if len(parameters) > MAX_PARAMETERS:
            raise InvalidArgument(f"at most {MAX_PARAMETERS} parameters")
        checked: dict[str, ParameterSpec] = {}
        for p in parameters:
            check_name("parameter", p.name)
            if p.name in checked:
                raise InvalidArgument(f"duplicate parameter name {p.name!r}")
            checked[p.name] = _check_parameter(p)
        for p in checked.values():
            if p.condition is None:
                continue
            c = p.condition
            parent = checked.get(c.parent)
            if parent is None:
                raise InvalidArgument(
                    f"parameter {p.name!r}: condition on unknown parent {c.parent!r}"
                )
            if not c.values and c.min_value is None and c.max_value is None:
                raise InvalidArgument(
                    f"parameter {p.name!r}: the condition on {c.parent!r} needs values or a range"
                )
            if (c.min_value is not None or c.max_value is not None) and not parent.is_numeric:
                raise InvalidArgument(
                    f"parameter {p.name!r}: a range condition needs a numeric parent, "
                    f"{c.parent!r} is categorical; list its values instead"
                )
            for v in c.values:
                parent.validate_value(v)
        ordered: list[ParameterSpec] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join(path[path.index(name) :] + [name])
                raise InvalidArgument(f"conditions form a cycle: {cycle}")
            state[name] = 1
            spec = checked[name]
            if spec.condition is not None:
                visit(spec.condition.parent, path + [name])
            state[name] = 2
            ordered.append(_normalise_condition(spec, checked))

        for name in checked:
            visit(name, [])
        return cls(tuple(ordered))

    @classmethod
    def from_dicts(cls, raw: Sequence[Mapping[str, Any]]) -> SearchSpace:
        return cls.build([_parameter_from_dict(r) for r in raw])

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.parameters]

    def __getitem__(self, name: str) -> ParameterSpec:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def is_active(self, spec: ParameterSpec, params: Mapping[str, ParamValue]) -> bool:
        """Whether `spec` is active given the values of its ancestors in `params`."""
        if spec.condition is None:
            return True
        parent = spec.condition.parent
        if parent not in params:
            return False
        return spec.condition.holds(params[parent])

    def validate(self, params: Mapping[str, Any]) -> Params:
        """Checks a full configuration: every active parameter present and valid, no others.

        Returns the values in canonical types. Raises InvalidArgument saying what to fix.
        """
        unknown = sorted(set(params) - set(self._by_name))
        if unknown:
            raise InvalidArgument(f"unknown parameters {unknown}; the space has {self.names}")
        out: Params = {}
        for spec in self.parameters:
            active = self.is_active(spec, out)
            if not active:
                if spec.name in params:
                    raise InvalidArgument(
                        f"parameter {spec.name!r} is inactive for these values of "
                        f"{spec.condition.parent if spec.condition else ''!r}: leave it out"
                    )
                continue
            if spec.name not in params:
                raise InvalidArgument(f"parameter {spec.name!r} is missing")
            out[spec.name] = spec.validate_value(params[spec.name])
        return out


def _normalise_condition(
    spec: ParameterSpec, by_name: Mapping[str, ParameterSpec]
) -> ParameterSpec:
    """Stores condition values in the parent's canonical type so that `holds` compares equals."""
    c = spec.condition
    if c is None or not c.values:
        return spec
    parent = by_name[c.parent]
    values = tuple(parent.validate_value(v) for v in c.values)
    return ParameterSpec(
        name=spec.name,
        kind=spec.kind,
        low=spec.low,
        high=spec.high,
        log=spec.log,
        choices=spec.choices,
        condition=Condition(c.parent, values, c.min_value, c.max_value),
    )
