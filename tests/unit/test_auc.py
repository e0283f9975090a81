"""ROC AUC: the number the quality monitor alerts on must be right, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from streams.analytics.auc import roc_auc


def test_perfect_and_inverted() -> None:
    assert roc_auc([False, False, True, True], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_all_ties_is_half() -> None:
    assert roc_auc([True, False, True, False], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_hand_computed() -> None:
    # Pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4.
    assert roc_auc([False, False, True, True], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # One tie between a positive and a negative counts one half: (1 + 0.5 + 1 + 1) / 4.
    assert roc_auc([False, False, True, True], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(0.875)


def test_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + labels * 0.3, 1)  # coarse: many ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairwise)


@pytest.mark.parametrize("labels", [[True, True], [False, False, False]])
def test_one_class_raises(labels: list[bool]) -> None:
    with pytest.raises(ValueError):
        roc_auc(labels, [0.1] * len(labels))


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        roc_auc([True, False], [0.1])
