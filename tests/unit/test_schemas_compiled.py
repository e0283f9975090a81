"""The compiled schemas (the fast path of streams.contract.schemas.validate) judge exactly like
jsonschema.

jsonschema is the reference. The compiled code must never accept what jsonschema refuses (that
would let a contract violation through); it should not refuse what jsonschema accepts either
(harmless, since validate then asks jsonschema, but every such event would pay the slow path).
Instances are the schemas' own examples, mutated one or a few places at a time.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.schemas import EventKind, compiled, is_date_time, schema, validator

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["", "2026-11-27T10:00:00Z", "2026-02-30T10:00:00Z", "2026-11-27 10:00",
                     "H001", "chest-xray", "ok", "routine", "CT", "1.2.3", "a" * 32, "-1"]),
    st.sampled_from([0, 1, -1, 0.5, 1.0, 2**31, 10**9]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside `value` that can be replaced or removed."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, kind: EventKind) -> Any:
    examples = schema(kind)["examples"]
    instance = copy.deepcopy(examples[draw(st.integers(0, len(examples) - 1))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(instance)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = instance
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return instance


def _compiled_accepts(kind: EventKind, instance: Any) -> bool:
    try:
        compiled(kind)(instance)
    except Exception:  # any refusal counts as one
        return False
    return True


@pytest.mark.parametrize("kind", list(EventKind))
def test_examples_pass_both(kind: EventKind) -> None:
    for instance in schema(kind)["examples"]:
        assert _compiled_accepts(kind, instance)
        assert validator(kind).is_valid(instance)


@pytest.mark.parametrize("kind", list(EventKind))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_agrees_with_jsonschema(kind: EventKind, data: st.DataObject) -> None:
    instance = data.draw(mutated(kind))
    assert _compiled_accepts(kind, instance) == validator(kind).is_valid(instance), instance


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-11-27T10:00:00Z", True), ("2026-11-27t10:00:00.5+03:00", True),
    ("2026-02-30T10:00:00Z", False), ("2026-11-27T25:00:00Z", False),
    ("2026-11-27T10:00:00", False), ("2026-11-27 10:00:00Z", False),
    ("2026-11-27T10:00:00+24:00", False), ("", False),
])
def test_date_time_format(text: str, ok: bool) -> None:
    assert is_date_time(text) is ok
