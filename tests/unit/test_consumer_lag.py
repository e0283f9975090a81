"""Consumer lag sums the records each assigned partition still owes, per topic."""

from __future__ import annotations

from streams.analytics.lag import PartitionOffsets, topic_lags


def test_lag_is_highwater_minus_committed_summed_per_topic() -> None:
    lags = topic_lags([
        PartitionOffsets("radiology.studies.v1", highwater=120, committed=100),
        PartitionOffsets("radiology.studies.v1", highwater=7, committed=2),
        PartitionOffsets("radiology.findings.v1", highwater=50, committed=50),
    ])
    assert lags == {"radiology.studies.v1": 25, "radiology.findings.v1": 0}


def test_unknown_offsets_count_as_caught_up_and_lag_is_never_negative() -> None:
    lags = topic_lags([
        PartitionOffsets("radiology.studies.v1", highwater=None, committed=10),
        PartitionOffsets("radiology.studies.v1", highwater=10, committed=None),
        # A commit can race ahead of the cached high-water mark.
        PartitionOffsets("radiology.studies.v1", highwater=10, committed=12),
    ])
    assert lags == {"radiology.studies.v1": 0}
