"""Agreement of an AI service with radiologists, as pure logic: ROC AUC with its confidence
interval, and sensitivity and specificity at the operating threshold.

AUC confidence interval: DeLong, DeLong & Clarke-Pearson (1988) variance of the Mann-Whitney
AUC, from the structural components computed with midranks in O(n log n) (the Sun & Xu 2014
formulation), and a normal-approximation interval ``AUC ± z·SE`` clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streams.analytics.auc import midranks, roc_auc

#: Two-sided 95 % normal quantile.
Z_95 = 1.959963984540054


def delong_components(labels: Sequence[bool] | np.ndarray,
                      scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (V10 over positives, V01 over negatives).

    V10[i] is the share of negatives a positive outscores (ties one half), V01[j] the share of
    positives that outscore a negative; both average to the AUC.
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise ValueError("DeLong components need at least one positive and one negative")
    combined = midranks(np.concatenate([pos, neg]))
    v10 = (combined[:m] - midranks(pos)) / n
    v01 = 1.0 - (combined[m:] - midranks(neg)) / m
    return v10, v01


def delong_variance(labels: Sequence[bool] | np.ndarray,
                    scores: Sequence[float] | np.ndarray) -> float:
    """Variance of the AUC estimate (DeLong 1988): S10/m + S01/n.

    Raises:
        ValueError: with fewer than two studies of either class (no sample variance then).
    """
    v10, v01 = delong_components(labels, scores)
    if v10.size < 2 or v01.size < 2:
        raise ValueError("DeLong variance needs at least two positives and two negatives")
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


@dataclass(frozen=True)
class AucEstimate:
    auc: float
    #: Standard error (DeLong); None when the variance is undefined.
    se: float | None
    #: 95 % interval (DeLong, normal approximation, clipped to [0, 1]); None when the variance
    #: is undefined (fewer than two studies of a class).
    ci: tuple[float, float] | None


def auc_with_ci(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray,
                z: float = Z_95) -> AucEstimate:
    auc = roc_auc(labels, scores)
    try:
        se = float(np.sqrt(delong_variance(labels, scores)))
    except ValueError:
        return AucEstimate(auc, None, None)
    return AucEstimate(auc, se, (max(0.0, auc - z * se), min(1.0, auc + z * se)))


def sensitivity_specificity(truth: Sequence[bool],
                            predicted: Sequence[bool]) -> tuple[float | None, float | None]:
    """Sensitivity and specificity of ``predicted`` against ``truth``; None where a class is
    absent from ``truth``."""
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t and p)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t and not p)
    tn = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and not p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if not t and p)
    return (tp / (tp + fn) if tp + fn else None, tn / (tn + fp) if tn + fp else None)
