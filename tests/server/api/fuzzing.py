"""Hypothesis strategies for the API's request messages, from their descriptors: any
field set or not, scalars drawn from ordinary and extreme values (int64 limits, NaN, 1e308,
5e-324, unknown enum numbers, long and odd strings), and valid requests with a few fields
overwritten, which reach the rules behind the first checks."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT64 = 2**63 - 1
INT32 = 2**31 - 1
EXTREME_INTS = [0, 1, -1, 2, 3, 100, 101, INT32, -(INT32 + 1), 2**53, 2**53 - 1, INT64, -INT64 - 1]
EXTREME_FLOATS = [
    0.0,
    -0.0,
    0.5,
    1.0,
    -1.0,
    5e-324,
    1e-300,
    1e300,
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
]
NAMES = ["s", "x", "lr", "layers", "units_1", "opt", "batch", "loss", "acc", "w", "w2", ""]
ODD_STRINGS = ["a" * 10_000, "n\n", " ", "é", "\x00", "a.b-c_d", "<img src=x>", "x" * 129]

_INT_TYPES = {
    FieldDescriptor.TYPE_INT32: (-(INT32 + 1), INT32),
    FieldDescriptor.TYPE_SINT32: (-(INT32 + 1), INT32),
    FieldDescriptor.TYPE_SFIXED32: (-(INT32 + 1), INT32),
    FieldDescriptor.TYPE_INT64: (-INT64 - 1, INT64),
    FieldDescriptor.TYPE_SINT64: (-INT64 - 1, INT64),
    FieldDescriptor.TYPE_SFIXED64: (-INT64 - 1, INT64),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of one scalar field: ordinary ones, the type's extremes, and names of the
    study the tests set up (so that lookups sometimes succeed)."""
    if field.type in _INT_TYPES:
        low, high = _INT_TYPES[field.type]
        extremes = [v for v in EXTREME_INTS if low <= v <= high]
        return st.one_of(st.sampled_from(extremes), st.integers(low, high))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(st.sampled_from(EXTREME_FLOATS), st.floats(allow_nan=True))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-2, len(field.enum_type.values) + 2)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    return st.one_of(st.sampled_from(NAMES + ODD_STRINGS), st.text(max_size=24))


def message_values(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of field values for a message of this type (nested messages as dicts)."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                value = (
                    message_values(value_field.message_type, depth + 1)
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE
                    else scalar(value_field)
                )
                key = scalar(field.message_type.fields_by_name["key"])
                optional[field.name] = st.dictionaries(key, value, max_size=3)
                continue
            inner = message_values(field.message_type, depth + 1)
        else:
            inner = scalar(field)
        if field.is_repeated:
            optional[field.name] = st.lists(inner, max_size=3)
        else:
            optional[field.name] = inner
    return st.fixed_dictionaries({}, optional=optional)


def build(message_type: type[Message], values: dict[str, Any]) -> Message:
    """The message of `message_type` with these field values (see `message_values`)."""
    message = message_type()
    fill(message, values)
    return message


def fill(message: Message, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    fill(target[k], v)
                else:
                    target[k] = v
        elif field.is_repeated:
            for item in value:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    fill(target.add(), item)
                else:
                    target.append(item)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.SetInParent()
            fill(target, value)
        else:
            setattr(message, name, value)


Path = tuple[tuple[Any, ...], FieldDescriptor]


def scalar_paths(message: Message, prefix: tuple[Any, ...] = ()) -> list[Path]:
    """Where `mutated` may write: (steps to the value, the scalar field it holds) for every
    scalar set in the message, every unset scalar of a message present, and the values of
    maps and repeated scalars."""
    paths: list[Path] = []
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type != FieldDescriptor.TYPE_MESSAGE:
                    paths.extend(((*prefix, field.name, key), value_field) for key in value)
            elif field.is_repeated:
                for i, item in enumerate(value):
                    paths.extend(scalar_paths(item, (*prefix, field.name, i)))
            elif message.HasField(field.name):
                paths.extend(scalar_paths(value, (*prefix, field.name)))
        elif field.is_repeated:
            paths.extend(((*prefix, field.name, i), field) for i in range(len(value)))
        else:
            paths.append(((*prefix, field.name), field))
    return paths


@st.composite
def mutated(draw: st.DrawFn, valid: Message, changes: int = 3) -> Message:
    """`valid` with up to `changes` scalar values overwritten by drawn ones."""
    message = type(valid)()
    message.CopyFrom(valid)
    paths = scalar_paths(message)
    for _ in range(draw(st.integers(1, changes))):
        steps, field = draw(st.sampled_from(paths))
        holder: Any = message
        for step in steps[:-1]:
            holder = holder[step] if isinstance(step, int) else getattr(holder, step)
        last = steps[-1]
        value = draw(scalar(field))
        if isinstance(holder, Message) and isinstance(last, str):
            setattr(holder, last, value)
        else:  # an element of a repeated scalar, or the value under a map key
            holder[last] = value
    return message
