"""A mergeable quantile sketch with a relative-error guarantee (DDSketch-style log buckets).

Latency quantiles must be summed over partitions, windows and workers, which rules out exact
quantiles (they need every value) and averages of per-partition quantiles (wrong). A log-bucket
sketch merges exactly: bucket counts add up.

Buckets. With `gamma = (1 + alpha) / (1 - alpha)`, a value x > 0 falls into bucket
`i = ceil(log_gamma(x))`, which covers (gamma^(i-1), gamma^i]. The bucket's representative
value `2 * gamma^i / (gamma + 1)` is within relative error alpha of every x in the bucket.
Zeros have their own bucket; negative, NaN and infinite values are rejected.

Guarantee (stated precisely). Let S be the multiset of the n >= 1 values added (or merged in),
sorted as x_0 <= x_1 <= ... <= x_(n-1). For q in [0, 1], `quantile(q)` returns v with
    |v - x_r| <= alpha * x_r,   where r = floor(q * (n - 1))
(the lower q-quantile of S), up to floating-point rounding (about 1e-12 relative). Besides,
the ranks 0 and n - 1 (e.g. `quantile(0)`, `quantile(1)`) answer min(S) and max(S) exactly, and
other answers are clamped to [min, max], which never moves them away from x_r. Merging two
sketches with the same alpha gives exactly the sketch of the union (same buckets, count, min,
max), so the guarantee holds for any merge of partitions and windows.

Size: one integer per bucket between the smallest and the largest non-zero value, i.e. at most
ceil(ln(max/min) / ln(gamma)) + 1 (about 350 for three decades at alpha = 0.01); `to_json`
stores them densely from the first bucket, which is compact enough for a Faust table value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Default relative accuracy: quantiles within 1 % of a value in the data.
DEFAULT_ALPHA = 0.01


def _log_gamma(alpha: float) -> float:
    return math.log((1.0 + alpha) / (1.0 - alpha))


def _bucket(value: float, log_gamma: float) -> int:
    """The bucket of a value > 0: ceil(log_gamma(value))."""
    return math.ceil(math.log(value) / log_gamma)


def _check_value(value: float) -> None:
    if not math.isfinite(value) or value < 0.0:
        raise ValueError("a sketch takes finite values >= 0 only")


class LogSketch:
    """Quantiles within relative error `alpha`; mergeable; JSON round trip."""

    __slots__ = ("_buckets", "_gamma", "_log_gamma", "alpha", "count", "max", "min", "zeros")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = _log_gamma(alpha)
        self._buckets: dict[int, int] = {}
        #: Number of values equal to 0.
        self.zeros = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def _value(self, index: int) -> float:
        return 2.0 * math.exp(index * self._log_gamma) / (self._gamma + 1.0)

    def add(self, value: float, weight: int = 1) -> None:
        """Add `value` (>= 0, finite) `weight` times."""
        _check_value(value)
        if weight < 1:
            raise ValueError("weight must be a positive integer")
        if value == 0.0:
            self.zeros += weight
        else:
            i = _bucket(value, self._log_gamma)
            self._buckets[i] = self._buckets.get(i, 0) + weight
        self.count += weight
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def extend(self, values: Iterable[float]) -> LogSketch:
        for v in values:
            self.add(v)
        return self

    def merge(self, other: LogSketch) -> None:
        """Add `other`'s values to this sketch (exact: bucket counts add)."""
        if other.alpha != self.alpha:
            raise ValueError("only sketches with the same alpha merge")
        for i, c in other._buckets.items():
            self._buckets[i] = self._buckets.get(i, 0) + c
        self.zeros += other.zeros
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The lower q-quantile within relative error alpha (see the module docstring);
        None when the sketch is empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        if rank == 0:
            return self.min
        if rank == self.count - 1:
            return self.max
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for i in sorted(self._buckets):
            seen += self._buckets[i]
            if seen > rank:
                return min(self.max, max(self.min, self._value(i)))
        return self.max  # unreachable: the counts add up to self.count

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: alpha, count, zeros, min, max, first bucket index and dense counts."""
        out: dict[str, Any] = {"a": self.alpha, "n": self.count, "z": self.zeros}
        if self.count:
            out["lo"], out["hi"] = self.min, self.max
        if self._buckets:
            first, last = min(self._buckets), max(self._buckets)
            out["o"] = first
            out["b"] = [self._buckets.get(i, 0) for i in range(first, last + 1)]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogSketch:
        sketch = cls(float(data["a"]))
        sketch.count = int(data["n"])
        sketch.zeros = int(data["z"])
        if sketch.count:
            sketch.min, sketch.max = float(data["lo"]), float(data["hi"])
        first = int(data.get("o", 0))
        sketch._buckets = {first + k: int(c) for k, c in enumerate(data.get("b", ())) if c}
        if sketch.zeros + sum(sketch._buckets.values()) != sketch.count:
            raise ValueError("sketch counts do not add up")
        return sketch

    @staticmethod
    def json_add(data: Mapping[str, Any] | None, value: float,
                 alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
        """`from_json(data).add(value)` then `to_json()`, without unpacking the buckets.

        The aggregators add one value to many stored sketches per event; copying the dense
        bucket list and touching one slot is far cheaper than the dict round trip.
        """
        if not data:
            sketch = LogSketch(alpha)
            sketch.add(value)
            return sketch.to_json()
        out = LogSketch.json_copy(data)
        LogSketch.json_add_into(out, value)
        return out

    @staticmethod
    def json_copy(data: Mapping[str, Any]) -> dict[str, Any]:
        """A sketch's JSON form that shares nothing with `data` (the bucket list is copied)."""
        out = dict(data)
        if "b" in out:
            out["b"] = list(out["b"])
        return out

    @staticmethod
    def json_add_into(data: dict[str, Any], value: float) -> None:
        """`json_add` in place, on a JSON form the caller owns (a new one, or a `json_copy`):
        an aggregator folding a batch copies each sketch once, not once per event."""
        _check_value(value)
        count = int(data["n"])
        data["n"] = count + 1
        data["lo"] = min(float(data["lo"]), value) if count else value
        data["hi"] = max(float(data["hi"]), value) if count else value
        if value == 0.0:
            data["z"] = int(data["z"]) + 1
            return
        i = _bucket(value, _log_gamma(float(data["a"])))
        buckets = data.get("b")
        if not buckets:
            data["o"], data["b"] = i, [1]
            return
        first = int(data["o"])
        if i < first:
            buckets[:0] = [1] + [0] * (first - i - 1)
            data["o"] = i
        elif i >= first + len(buckets):
            buckets.extend([0] * (i - first - len(buckets)))
            buckets.append(1)
        else:
            buckets[i - first] += 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogSketch):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LogSketch(alpha={self.alpha}, count={self.count})"
