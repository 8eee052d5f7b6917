"""Is LRN worth a faster implementation? (issue 7; the answer, on this machine, is no.)

Times one training step of the full model (the step of benchmarks/model_speed.py) with three
normalizations, interleaved, in process CPU seconds (steady on a shared machine):

* `tensorflow`: `tf.nn.local_response_normalization`, what the model uses;
* `banded`: the same formula as a matrix multiply of the squares by a banded 0/1 matrix, with the
  gradient written out (a second banded multiply). Alone, forward+backward, it is 3-4 times
  faster than TensorFlow's op, and it matches it to float32 round-off;
* `identity`: no normalization at all, which bounds what any LRN could save.

It prints one JSON line: CPU seconds per step of each, and LRN's share of the step.

    python benchmarks/lrn.py --batch_size=32 --repeats=4 --intra_op_threads=1 --inter_op_threads=1
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf import performance  # noqa: E402

performance.enable_onednn()  # before TensorFlow is imported: it reads the setting only then

import model_speed  # noqa: E402  (benchmarks/model_speed.py: its flags and train step)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from alexnet_tf import layers  # noqa: E402


def banded_lrn(x, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3 with banded matrix multiplies and a written-out gradient (float32)."""
    channels = x.shape[-1]
    i = np.arange(channels)
    band = tf.constant((np.abs(i[:, None] - i[None, :]) <= n // 2).astype(np.float32))

    @tf.custom_gradient
    def lrn(x):
        flat = tf.reshape(x, (-1, channels))
        d = k + alpha * tf.matmul(tf.square(flat), band)
        scale = tf.pow(d, -beta)
        y = flat * scale

        def grad(upstream):
            # dL/da_j = g_j d_j^-beta - 2 alpha beta a_j sum_{i in window(j)} g_i b_i / d_i;
            # the window is symmetric, so the sum is the same banded multiply.
            g = tf.reshape(upstream, (-1, channels))
            spread = tf.matmul(g * y / d, band)
            return tf.reshape(g * scale - (2.0 * alpha * beta) * flat * spread, tf.shape(x))

        return tf.reshape(y, tf.shape(x)), grad

    return lrn(x)


VARIANTS = {
    "tensorflow": layers.local_response_normalization,
    "banded": tf.autograph.experimental.do_not_convert(banded_lrn),
    "identity": lambda x, *args: tf.identity(x),
}


def run(batch_size: int, repeats: int) -> dict:
    steps = {}
    original = layers.local_response_normalization
    for name, lrn in VARIANTS.items():
        fn, args, *_ = model_speed.make_functions(batch_size, False)["train"]
        layers.local_response_normalization = lrn  # the model's layers call it when traced
        try:
            fn(*args).numpy()
        finally:
            layers.local_response_normalization = original
        fn(*args).numpy()  # warm-up
        steps[name] = (fn, args)
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, (fn, args) in steps.items():
            start = time.process_time()
            fn(*args).numpy()
            cpu[name].append(time.process_time() - start)
    median = {name: statistics.median(v) for name, v in cpu.items()}
    return {
        **{f"{name}_cpu_seconds": round(s, 3) for name, s in median.items()},
        "lrn_share_of_step": round(1 - median["identity"] / median["tensorflow"], 3),
        "banded_over_tensorflow": round(median["banded"] / median["tensorflow"], 3),
        "batch_size": batch_size,
        "onednn": performance.onednn_enabled(),
        "threads": performance.thread_settings(),
    }


def main(argv):
    del argv
    f = flags.FLAGS
    performance.configure_threads(f.intra_op_threads, f.inter_op_threads)
    print(json.dumps(run(f.batch_size, f.repeats)), flush=True)


if __name__ == "__main__":
    app.run(main)
