"""The log sketch: quantiles within the stated relative error, exact merges, JSON round trip."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.analytics.sketch import LogSketch

QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
#: Floating-point slack on top of alpha (bucket boundaries are computed with log/exp).
SLACK = 1e-9


def exact(sorted_values: list[float], q: float) -> float:
    """The lower q-quantile, the value the guarantee is stated against."""
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": lambda r: r.uniform(0.001, 10.0),
    "lognormal": lambda r: r.lognormvariate(-2.0, 1.5),
    "exponential": lambda r: r.expovariate(3.0),
    # Heavy tails: Pareto with shape 1.1 (infinite variance) and a Cauchy magnitude.
    "pareto": lambda r: r.paretovariate(1.1) * 0.01,
    "cauchy_abs": lambda r: abs(math.tan(math.pi * (r.random() - 0.5))),
    # Many exact zeros next to tiny and huge values.
    "zeros_and_extremes": lambda r: r.choice([0.0, 0.0, 1e-6, 3e-6, 1e4, r.random()]),
}


def max_relative_error(sketch: LogSketch, values: list[float]) -> float:
    ordered = sorted(values)
    worst = 0.0
    for q in QS:
        truth, got = exact(ordered, q), sketch.quantile(q)
        assert got is not None
        if truth == 0.0:
            assert got == 0.0, f"q={q}: {got} for an exact 0"
            continue
        worst = max(worst, abs(got - truth) / truth)
    return worst


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_within_relative_error(name: str, alpha: float) -> None:
    rng = random.Random(f"{name}-{alpha}")
    values = [DISTRIBUTIONS[name](rng) for _ in range(20000)]
    sketch = LogSketch(alpha).extend(values)
    assert sketch.count == len(values)
    assert max_relative_error(sketch, values) <= alpha + SLACK


def test_bound_is_tight_enough_to_mean_something() -> None:
    # Values spread over a decade use many buckets and land near bucket edges: the observed error
    # must come close to alpha (a sketch that returned exact values would not be a log sketch).
    rng = random.Random(7)
    values = [10 ** rng.uniform(0, 1) for _ in range(5000)]
    sketch = LogSketch(0.05).extend(values)
    ordered = sorted(values)
    errors = [abs((sketch.quantile(q) or 0.0) - exact(ordered, q)) / exact(ordered, q)
              for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert 0.0 < max(errors) <= 0.05 + SLACK


def test_min_and_max_are_exact() -> None:
    values = [0.0123, 7.5, 0.5, 3.3]
    sketch = LogSketch().extend(values)
    assert sketch.quantile(0.0) == min(values) and sketch.quantile(1.0) == max(values)


def test_small_and_empty_sketches() -> None:
    assert LogSketch().quantile(0.5) is None
    one = LogSketch().extend([0.25])
    assert all(one.quantile(q) == 0.25 for q in QS)
    zeros = LogSketch().extend([0.0] * 3)
    assert zeros.quantile(0.99) == 0.0


def test_merge_equals_sketch_of_the_union() -> None:
    rng = random.Random(3)
    parts = [[rng.paretovariate(1.5) for _ in range(n)] + [0.0] * (n % 3)
             for n in (1, 10, 500, 2000)]
    merged = LogSketch()
    for part in parts:
        merged.merge(LogSketch().extend(part))
    union = LogSketch().extend(v for part in parts for v in part)
    assert merged == union
    assert [merged.quantile(q) for q in QS] == [union.quantile(q) for q in QS]


def test_merge_with_an_empty_sketch_changes_nothing() -> None:
    sketch = LogSketch().extend([1.0, 2.0])
    before = sketch.to_json()
    sketch.merge(LogSketch())
    assert sketch.to_json() == before
    empty = LogSketch()
    empty.merge(LogSketch().extend([1.0, 2.0]))
    assert empty == sketch


def test_json_round_trip_is_exact_and_compact() -> None:
    rng = random.Random(11)
    sketch = LogSketch().extend([rng.lognormvariate(0, 1) for _ in range(10000)] + [0.0])
    data = orjson.loads(orjson.dumps(sketch.to_json()))
    back = LogSketch.from_json(data)
    assert back == sketch
    assert [back.quantile(q) for q in QS] == [sketch.quantile(q) for q in QS]
    # About 8 decades of lognormal spread at alpha 0.01: a few hundred small integers.
    assert len(orjson.dumps(data)) < 4000
    assert LogSketch.from_json(LogSketch().to_json()) == LogSketch()


def test_inconsistent_json_is_rejected() -> None:
    data = LogSketch().extend([1.0, 2.0]).to_json()
    data["n"] = 5
    with pytest.raises(ValueError, match="add up"):
        LogSketch.from_json(data)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_rejects_values_outside_its_domain(bad: float) -> None:
    with pytest.raises(ValueError):
        LogSketch().add(bad)


def test_merging_different_accuracies_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LogSketch(0.01).merge(LogSketch(0.02))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e6)), min_size=1, max_size=40),
       st.sampled_from([0.01, 0.05]))
def test_json_add_equals_the_round_trip(values: list[float], alpha: float) -> None:
    data: dict[str, Any] | None = None
    for v in values:
        data = LogSketch.json_add(data, v, alpha)
    assert data == LogSketch(alpha).extend(values).to_json()


def test_json_add_rejects_values_outside_the_domain() -> None:
    data = LogSketch().extend([1.0]).to_json()
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            LogSketch.json_add(data, bad)
