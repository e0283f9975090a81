"""Consumer lag (pure logic): how many records a worker's assigned partitions still owe.

Lag per partition is the broker's high-water mark minus the group's committed offset (the next
offset the group will resume from), never negative; a topic's lag is the sum over the partitions
this worker owns. SREs alert on it: a growing lag means studies wait for their AI results.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class PartitionOffsets(NamedTuple):
    topic: str
    #: Offset the next record written to the partition will get (None until first fetched).
    highwater: int | None
    #: Offset the group resumes from: committed, else the consumer's position.
    committed: int | None


def topic_lags(partitions: Iterable[PartitionOffsets]) -> dict[str, int]:
    """Records behind per topic; partitions with an unknown offset count as caught up."""
    out: dict[str, int] = {}
    for p in partitions:
        behind = 0
        if p.highwater is not None and p.committed is not None:
            behind = max(0, p.highwater - p.committed)
        out[p.topic] = out.get(p.topic, 0) + behind
    return out
