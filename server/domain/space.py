"""The search space: its parameters in parents-first order, its dict form (YAML/JSON, the
stored form), and the validation of configurations.

Plain Python, no gRPC or SQL: the servicer converts protobuf to these objects, the
algorithms read them, the storage keeps their JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import MAX_PARAMETERS, check_keys, check_name, listed, shown
from tunewire.server.domain.parameters import (
    Condition,
    ParameterKind,
    ParameterSpec,
    Params,
    ParamValue,
    check_condition,
    check_parameter,
)

__all__ = [
    "Condition",
    "ParameterKind",
    "ParameterSpec",
    "ParamValue",
    "Params",
    "SearchSpace",
]

# The keys of a parameter's dict form, by kind, and of a condition's.
RANGE_KEYS = frozenset({"name", "type", "min", "max", "scale", "condition"})
CHOICE_KEYS = frozenset({"name", "type", "values", "condition"})
CONDITION_KEYS = frozenset({"parent", "values", "min", "max"})
TYPE_ALIASES = {"integer": "int", "choice": "categorical", "ordinal": "discrete", "real": "float"}


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{where}: {key} must be a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgument(f"{where}: {key} {shown(value)} is out of range") from None


def _condition_from_dict(where: str, raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: condition must be a mapping with 'parent'")
    check_keys(f"{where}: condition", raw, CONDITION_KEYS)
    values = raw.get("values") or ()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidArgument(f"{where}: condition values must be a list")
    return Condition(
        parent=str(raw.get("parent", "")),
        values=tuple(values),
        min_value=None if raw.get("min") is None else _number(where, "condition min", raw["min"]),
        max_value=None if raw.get("max") is None else _number(where, "condition max", raw["max"]),
    )


def _parameter_from_dict(raw: Mapping[str, Any]) -> ParameterSpec:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(
            f"a parameter must be a mapping with 'name' and 'type', got {shown(raw)}"
        )
    name = raw.get("name", "")
    check_name("parameter", name)
    where = f"parameter {name!r}"
    kind_text = str(raw.get("type", "")).lower()
    kind_text = TYPE_ALIASES.get(kind_text, kind_text)
    try:
        kind = ParameterKind(kind_text)
    except ValueError:
        raise InvalidArgument(
            f"{where}: unknown type {shown(raw.get('type'))}; use float, int, categorical or "
            "discrete"
        ) from None
    ranged = kind in (ParameterKind.FLOAT, ParameterKind.INTEGER)
    check_keys(where, raw, RANGE_KEYS if ranged else CHOICE_KEYS)
    condition = _condition_from_dict(where, raw["condition"]) if raw.get("condition") else None
    if ranged:
        scale = str(raw.get("scale", "linear") or "linear").lower()
        if scale not in ("linear", "log"):
            raise InvalidArgument(f"{where}: scale must be 'linear' or 'log', got {shown(scale)}")
        if "min" not in raw or "max" not in raw:
            raise InvalidArgument(f"{where}: give both 'min' and 'max'")
        return ParameterSpec(
            name=name,
            kind=kind,
            low=_number(where, "min", raw["min"]),
            high=_number(where, "max", raw["max"]),
            log=scale == "log",
            condition=condition,
        )
    choices = raw.get("values") or ()
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
        raise InvalidArgument(f"{where}: values must be a list")
    if kind is ParameterKind.DISCRETE:
        choices = tuple(_number(where, "a discrete value", v) for v in choices)
    elif not all(isinstance(v, str) for v in choices):
        raise InvalidArgument(f"{where}: categorical values must be strings")
    return ParameterSpec(name=name, kind=kind, choices=tuple(choices), condition=condition)


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
            raise InvalidArgument(f"at most {MAX_PARAMETERS:,} parameters")
        checked: dict[str, ParameterSpec] = {}
        for p in parameters:
            check_name("parameter", p.name)
            if p.name in checked:
                raise InvalidArgument(f"duplicate parameter name {p.name!r}")
            checked[p.name] = check_parameter(p)
        for p in checked.values():
            if p.condition is not None:
                check_condition(p, checked.get(p.condition.parent))
        # Parents first: each parameter after the chain of its ancestors (iterative, as a
        # chain may be as long as the space).
        ordered: list[ParameterSpec] = []
        done: set[str] = set()
        for name in checked:
            chain: list[str] = []
            node: str | None = name
            while node is not None and node not in done:
                if node in chain:
                    cycle = chain[chain.index(node) :] + [node]
                    raise InvalidArgument(f"conditions form a cycle: {' -> '.join(cycle[:10])}")
                chain.append(node)
                condition = checked[node].condition
                node = condition.parent if condition is not None else None
            for member in reversed(chain):
                done.add(member)
                ordered.append(_normalise_condition(checked[member], checked))
        return cls(tuple(ordered))

    @classmethod
    def from_dicts(cls, raw: Sequence[Mapping[str, Any]]) -> SearchSpace:
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
            raise InvalidArgument("parameters must be a list of parameter mappings")
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
            raise InvalidArgument(
                f"unknown parameters {listed(unknown)}; the space has {listed(self.names)}"
            )
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
