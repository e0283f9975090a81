"""ROC AUC without scikit-learn: the statistic the quality monitor and model card report.

Mann-Whitney formulation: AUC = P(score of a positive > score of a negative), ties counting
one half, computed from average ranks in O(n log n).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` with ties sharing their average rank, in O(n log n)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def roc_auc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (True = positive).

    Raises:
        ValueError: when lengths differ, scores are not finite, or one class is absent (the AUC
            is undefined then, and reporting 0.5 would hide it).
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative label")

    rank_sum_pos = float(midranks(s)[y].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
