"""The windows query of the city statistics (GET /stats/windows, pure logic): its parameters
checked, and its rows from the table cells."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from streams.analytics.rollups import Cells, aggregate, row
from streams.analytics.stats_keys import DIMENSIONS, Dimension, StatsKey
from streams.analytics.windows import WINDOWS, Window

#: Dimension values as the schemas allow them (hospital, device, service ids, finding codes).
VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

#: Rows GET /stats/windows returns when no `limit` is given, and the most it returns.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000


class QueryError(ValueError):
    """A bad query parameter; the API answers 400 with `parameter` and `detail`."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True)
class WindowQuery:
    window: Window
    dimension: Dimension
    value: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> WindowQuery:
        """From query parameters; unknown parameters are ignored (cache busters)."""
        window = params.get("window")
        if window not in WINDOWS:
            raise QueryError("window", f"must be one of {', '.join(WINDOWS)}")
        dimension = params.get("dimension")
        if dimension not in DIMENSIONS:
            raise QueryError("dimension", f"must be one of {', '.join(DIMENSIONS)}")
        value = params.get("value")
        if value is not None and not VALUE_PATTERN.match(value):
            raise QueryError("value", "must match ^[A-Za-z0-9_.-]{1,64}$")
        raw_limit = params.get("limit")
        limit = DEFAULT_LIMIT
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                raise QueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
            limit = int(raw_limit)
        return cls(cast(Window, window), cast(Dimension, dimension), value, limit)

    def wants(self, key: str) -> bool:
        prefix = f"{self.window}|"
        if not key.startswith(prefix):
            return False
        parsed = StatsKey.parse(key)
        return parsed.dimension == self.dimension and (
            self.value is None or parsed.value == self.value)


def window_rows(query: WindowQuery, counts: Cells, latency: Cells = ()) -> dict[str, Any]:
    """GET /stats/windows: rows sorted by (start, value); with more than `limit` rows, the
    latest `limit` are kept."""
    aggs = aggregate(counts, latency, want=query.wants)
    # Labels sort like their starts (zero-padded, most significant first).
    keyed = sorted(((StatsKey.parse(k), a) for k, a in aggs.items()),
                   key=lambda ka: (ka[0].label, ka[0].value))
    rows = [row(k, a) for k, a in keyed][-query.limit:]
    return {"window": query.window, "dimension": query.dimension, "rows": rows}
