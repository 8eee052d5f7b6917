"""The two towers on one device: one grouped convolution, or two convolutions?

conv2, conv4 and conv5 see only their own tower's maps (figure 2 of the paper). On one device
this can run as one convolution with two groups (`tf.nn.conv2d` with a kernel of half the input
depth) or as two convolutions on the two halves, as `alexnet_tf.model` builds it (one Keras layer
per tower). This measures both, forward and forward+backward (gradients to the input and the
kernel, as in training), on the real activations of scikit-learn's sample photographs through a
freshly initialized network, and checks that both give the same numbers. It prints one JSON line.

    python benchmarks/towers.py --batch_size=32 --repeats=5
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/towers.py   # TensorFlow's own Eigen kernels
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.cli import performance  # noqa: E402

performance.enable_onednn()  # before TensorFlow is imported: it reads the setting only then

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from photos import real_images  # noqa: E402  (benchmarks/photos.py)

from alexnet_tf.model import build_alexnet, endpoints_model  # noqa: E402

flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions; the median is kept.")

# Grouped layers and the layer whose output (both towers) feeds them.
GROUPED = {"conv2": "pool1", "conv4": "conv3", "conv5": "conv4"}


def _grouped(x, kernel, bias):
    return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)


def _split(x, kernel, bias):
    xs, ks, bs = (tf.split(t, 2, axis=-1) for t in (x, kernel, bias))
    return tf.concat(
        [tf.nn.relu(tf.nn.conv2d(xi, ki, 1, "SAME") + bi) for xi, ki, bi in zip(xs, ks, bs)], -1
    )


def _with_gradients(conv):
    def run(x, kernel, bias, upstream):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            y = conv(x, kernel, bias)
        return (y, *tape.gradient(y, [x, kernel, bias], upstream))

    return run


def _seconds(fn, args, steps: int = 2) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def run(batch_size: int = 32, repeats: int = 5) -> dict:
    """Times grouped against split convolutions; returns wall/CPU milliseconds and their ratio."""
    model = build_alexnet(seed=0)
    names = [f"{layer}_{t}" for layer in GROUPED.values() for t in "ab"]
    acts = endpoints_model(model, names)(real_images(batch_size, 227), training=False)
    cases = {}
    for layer, source in GROUPED.items():
        x = tf.concat([acts[f"{source}_a"], acts[f"{source}_b"]], -1)
        kernel = tf.concat([model.get_layer(f"{layer}_{t}").kernel for t in "ab"], -1)
        bias = tf.concat([model.get_layer(f"{layer}_{t}").bias for t in "ab"], -1)
        upstream = tf.ones(x.shape[:-1] + (kernel.shape[-1],)) / 100
        for how, conv in (("grouped", _grouped), ("split", _split)):
            cases[(layer, how, "forward")] = (tf.function(conv), (x, kernel, bias))
            cases[(layer, how, "train")] = (
                tf.function(_with_gradients(conv)),
                (x, kernel, bias, upstream),
            )
    worst, unsupported = 0.0, []
    for key, (fn, args) in list(cases.items()):
        layer, how, kind = key
        try:
            got = fn(*args)  # also the warm-up
        except tf.errors.InvalidArgumentError:
            # TensorFlow's own (Eigen) CPU kernels have no gradient of a grouped convolution.
            unsupported.append("_".join(key))
            del cases[key]
            continue
        if how == "grouped":
            want = cases[(layer, "split", kind)][0](*args)
            for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
                scale = float(tf.reduce_max(tf.abs(w))) or 1.0
                worst = max(worst, float(tf.reduce_max(tf.abs(g - w))) / scale)
    times = {key: [] for key in cases}
    for _ in range(repeats):
        for key, (fn, args) in cases.items():
            times[key].append(_seconds(fn, args))
    result = {}
    for (layer, how, kind), values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        result[f"{layer}_{kind}_{how}_ms"] = round(1e3 * wall, 1)
        result[f"{layer}_{kind}_{how}_cpu_ms"] = round(1e3 * cpu, 1)
    for kind in ("forward", "train"):
        if any(f"{layer}_{kind}_grouped_ms" not in result for layer in GROUPED):
            continue
        for clock in ("", "_cpu"):
            total = {
                how: sum(result[f"{layer}_{kind}_{how}{clock}_ms"] for layer in GROUPED)
                for how in ("grouped", "split")
            }
            result[f"{kind}{clock}_grouped_over_split"] = round(
                total["grouped"] / total["split"], 3
            )
    result.update(
        batch_size=batch_size,
        repeats=repeats,
        max_relative_difference=worst,
        unsupported=unsupported,
        onednn=performance.onednn_enabled(),
    )
    return result


def main(argv):
    del argv
    print(json.dumps(run(flags.FLAGS.batch_size, flags.FLAGS.repeats)), flush=True)


if __name__ == "__main__":
    app.run(main)
