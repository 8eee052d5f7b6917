"""Top-1 and top-5 error, the two numbers of table 1 and 2 of the paper, counted one way.

"the top-5 error rate is the fraction of test images for which the correct label is not among the
five labels considered most probable by the model" (section 1). Training's progress line, its
evaluation step and `alexnet_tf.evaluate` all count with `label_ranks`, so their numbers agree.

The tie rule: classes with equal scores are ranked by class index, the lower index first, as a
stable sort of the negated scores does (`np.argsort(-scores, kind="stable")`, or
`tf.math.top_k`). A correct label tied with the k-th score counts as in the top k only if its
index is lower than the other tied classes'; `tf.math.in_top_k` would count it in (lenient),
which makes a network whose outputs are all equal look perfect. A NaN score of the correct class
ranks last (always an error); NaN scores of other classes never rank above it.

    ranks = label_ranks(logits, labels)               # 0: the label scored highest
    wrong1, wrong5 = error_counts(logits, labels)     # float32 sums over the batch
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

TOP_K = (1, 5)  # table 1 and 2 of the paper


def label_ranks(scores: tf.Tensor | np.ndarray, labels: tf.Tensor | np.ndarray) -> tf.Tensor:
    """The rank of each row's correct label among that row's scores, under the tie rule above.

    Args:
        scores: (B, K) logits or probabilities (any monotone score works).
        labels: (B,) integer class indices in [0, K).

    Returns:
        (B,) int32: 0 when the label has the highest score, K when its score is NaN. The label is
        among the top k exactly when its rank is < k. Works eagerly on NumPy arrays and inside
        `tf.function` / XLA (no sort: one comparison per class).
    """
    scores = tf.convert_to_tensor(scores)
    labels = tf.cast(labels, tf.int32)
    num_classes = tf.shape(scores)[-1]
    own = tf.gather(scores, labels, axis=-1, batch_dims=1)[:, None]
    classes = tf.range(num_classes)[None, :]
    ahead = (scores > own) | ((scores == own) & (classes < labels[:, None]))
    ranks = tf.reduce_sum(tf.cast(ahead, tf.int32), axis=-1)
    return tf.where(tf.math.is_nan(own[:, 0]), num_classes, ranks)


def top_k_classes(scores: tf.Tensor | np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring classes per row, best first, ties to the lower index (as above)."""
    scores = np.asarray(scores)
    return np.argsort(-scores, axis=-1, kind="stable")[:, :k]


def error_counts(
    scores: tf.Tensor,
    labels: tf.Tensor,
    mask: tf.Tensor | None = None,
    top_k: Sequence[int] = TOP_K,
) -> tuple[tf.Tensor, ...]:
    """How many rows have their label outside the top k, for each k of `top_k` (float32 sums).

    Rows where `mask` is False (evaluation's padding) are not counted.
    """
    ranks = label_ranks(scores, labels)
    weight = tf.ones_like(ranks, tf.float32) if mask is None else tf.cast(mask, tf.float32)
    return tuple(tf.reduce_sum(tf.cast(ranks >= k, tf.float32) * weight) for k in top_k)
