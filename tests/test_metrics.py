"""The one top-1/top-5 error count, on hand-made ties (metrics.py documents the rule)."""

import numpy as np
import tensorflow as tf

from alexnet_tf.results import metrics
from alexnet_tf.results.evaluation import ErrorCounter

SCORES = np.array(
    [
        [0.1, 0.7, 0.1, 0.1],  # label 1 highest, no tie                  → rank 0
        [0.4, 0.4, 0.1, 0.1],  # label 1 ties class 0, which goes first    → rank 1
        [0.4, 0.4, 0.1, 0.1],  # label 0 ties class 1, and goes first      → rank 0
        [0.25, 0.25, 0.25, 0.25],  # all equal: the rank is the label      → rank 3
        [0.1, 0.2, 0.3, 0.4],  # label 0 lowest                           → rank 3
        [np.nan, 0.5, 0.2, 0.3],  # another class NaN: it never ranks above → rank 0
        [0.5, np.nan, 0.2, 0.3],  # the label's own score NaN: last         → rank 4 (K)
    ],
    np.float32,
)
LABELS = np.array([1, 1, 0, 3, 0, 1, 1])
RANKS = [0, 1, 0, 3, 3, 0, 4]


def test_ranks_follow_the_stable_sort_tie_rule():
    assert metrics.label_ranks(SCORES, LABELS).numpy().tolist() == RANKS
    # the same rule as the stable sort of the negated scores (rows without NaN)
    top = metrics.top_k_classes(SCORES[:5], 4)
    assert [int(np.flatnonzero(t == y)[0]) for t, y in zip(top, LABELS[:5])] == RANKS[:5]


def test_error_counts_top1_top2_and_mask():
    wrong1, wrong2 = metrics.error_counts(SCORES, LABELS, top_k=(1, 2))
    assert (float(wrong1), float(wrong2)) == (4.0, 3.0)
    mask = np.array([True, True, False, False, False, False, False])
    assert [float(x) for x in metrics.error_counts(SCORES, LABELS, mask, (1, 2))] == [1.0, 0.0]
    # a network whose outputs are all equal is not perfect (in_top_k would say it is)
    flat = np.zeros((4, 10), np.float32)
    labels = np.array([0, 3, 7, 9])
    assert float(metrics.error_counts(flat, labels)[0]) == 3.0
    assert bool(tf.reduce_all(tf.math.in_top_k(labels, flat, 1)))


def test_same_counts_in_a_compiled_function_and_in_the_evaluation_tool():
    compiled = tf.function(metrics.error_counts, jit_compile=True)
    expected = [4.0, 0.0]
    assert [float(x) for x in compiled(SCORES, LABELS)] == expected
    counter = ErrorCounter(num_classes=4)
    counter.update(SCORES, LABELS, np.ones(len(LABELS), bool))
    errors = counter.errors()
    assert errors["top1_error"] == 4 / 7 and errors["top5_error"] == 0.0
