import numpy as np
import pytest

from edge_aae.metrics import auroc, precision_recall_f1


def test_auroc_hand_computed():
    # positives 0.8, 0.4; negatives 0.5, 0.1: 3 of 4 pairs ordered
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.8, 0.5, 0.4, 0.1])) == pytest.approx(0.75)


def test_auroc_ties_count_half():
    assert auroc(np.array([1, 0]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_auroc_one_class_is_nan():
    assert np.isnan(auroc(np.zeros(3), np.arange(3.0)))


def test_precision_recall_f1():
    p, r, f = precision_recall_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert (p, r, f) == (0.5, 0.5, 0.5)
