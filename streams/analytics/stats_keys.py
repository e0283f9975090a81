"""Keys of the city statistics: a stats key names one window × dimension value, a cell key one
source partition's share of it (streams/analytics/exact_once.py says why cells are per partition).

A stats key is `<window>|<window label>|<dimension>|<value>`, e.g.
`hour|2024-05-14T09|hospital|gkb-67`, `week|2024-W20|city|city`, `total|total|service|chest-xray`
(window labels: streams.analytics.windows). It is also the record key on radiology.stats.v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast, get_args

from streams.analytics.windows import WINDOWS, Window, start

Dimension = Literal["city", "hospital", "device", "service", "finding"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
#: The value of the city dimension (there is one city).
CITY = "city"


def stats_key(window: Window, window_label: str, dimension: Dimension, value: str) -> str:
    return f"{window}|{window_label}|{dimension}|{value}"


@dataclass(frozen=True)
class StatsKey:
    window: Window
    label: str
    dimension: Dimension
    value: str

    @classmethod
    def parse(cls, key: str) -> StatsKey:
        window, window_label, dimension, value = key.split("|", 3)
        if window not in WINDOWS or dimension not in DIMENSIONS:
            raise ValueError(f"not a stats key: {key!r}")
        return cls(cast(Window, window), window_label, cast(Dimension, dimension), value)

    @property
    def start(self) -> datetime | None:
        return start(self.window, self.label)


#: Table keys of stats cells start with this; every other key is a seen entry.
CELL_PREFIX = "c|"


def cell_key(partition: int, key: str) -> str:
    return f"{CELL_PREFIX}{partition}|{key}"


def split_cell_key(key: str) -> tuple[int, str] | None:
    """(partition, stats key) of a cell key; None for other table keys (seen entries)."""
    if not key.startswith(CELL_PREFIX):
        return None
    _, partition, rest = key.split("|", 2)
    return int(partition), rest
