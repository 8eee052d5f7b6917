"""What the box head of ILSVRC-2012 task 2 costs the training step (goal: under 2%).

In one process, after warm-up, interleaved repetitions (median) of the training step of
alexnet_tf/training (forward, backward, weight decay, SGD-momentum update) at `--batch_size`:

* `plain`: the 2012 network;
* `boxes`: the same network with the `bbox` head and the smooth-L1 loss of the true class's box
  (the head computes only the 4 columns of the true class: `box_head.boxes_of_classes`);
* `head_only`: the head's own part of a step on fixed fc7 features (the true class's 4096×4
  slice, the loss, the SGD-momentum update of its 16.4 M weights; no weight decay, as in
  training): the cost the head adds, measured alone so that it is not lost in the step's noise
  on a shared machine.

It prints one JSON line: the seconds (wall and CPU) of each, and the ratios
`boxes / plain - 1` and `head_only / plain`.

    python benchmarks/box_head.py                  # batch 128, 1000 classes, 3 repetitions
    python benchmarks/box_head.py --repeats=5 --num_classes=10
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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from photos import real_images  # noqa: E402  (benchmarks/photos.py)

from alexnet_tf.model import IMAGE_SIZE, build_alexnet, endpoints_model  # noqa: E402
from alexnet_tf.model.box_head import BOX_LAYER, boxes_of_classes  # noqa: E402
from alexnet_tf.training import localization, optimizer  # noqa: E402
from alexnet_tf.training.localization import decayed_without_head  # noqa: E402

flags.DEFINE_integer("batch_size", 128, "Images per training step (section 5: 128).")
flags.DEFINE_integer("num_classes", 1000, "Classes of the softmax (and boxes of the head).")
flags.DEFINE_integer("repeats", 3, "Timed repetitions of each step; the median is kept.")
flags.DEFINE_integer("head_steps", 10, "Calls of the head-only step per repetition.")


def make_step(num_classes: int, localize: bool):
    """The update step of alexnet_tf/training on one device, with or without the box head."""
    model = build_alexnet(num_classes, seed=0, localization=localize)
    outputs = ["fc8", "drop7"] if localize else ["fc8"]
    endpoints = endpoints_model(model, outputs)
    sgd = optimizer.make_sgd(0.01)
    sgd.build(model.trainable_variables)
    decayed = decayed_without_head(model)
    head = model.get_layer(BOX_LAYER) if localize else None

    @tf.function
    def step(images, labels, boxes, has_box):
        with tf.GradientTape() as tape:
            out = endpoints(images, training=True)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, out["fc8"])
            if localize:
                predicted = boxes_of_classes(head, out["drop7"], labels)
                per_example += localization.box_loss(predicted, boxes, has_box)
            loss = tf.reduce_mean(per_example) + optimizer.l2_penalty(decayed)
        grads = tape.gradient(loss, model.trainable_variables)
        sgd.apply(grads, model.trainable_variables)
        return loss

    return step, head


def make_head_only(head):
    """The head's part of a step: the true class's slice, the loss and the update."""
    sgd = optimizer.make_sgd(0.01)
    variables = [head.kernel, head.bias]
    sgd.build(variables)

    @tf.function
    def step(features, labels, boxes, has_box):
        with tf.GradientTape() as tape:
            predicted = boxes_of_classes(head, features, labels)
            loss = tf.reduce_mean(localization.box_loss(predicted, boxes, has_box))
        sgd.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def _time(fn, args, calls: int = 1) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = fn(*args)
    out.numpy()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


def run(batch_size: int, num_classes: int, repeats: int, head_steps: int) -> dict:
    rng = np.random.default_rng(0)
    images = tf.constant(real_images(batch_size, IMAGE_SIZE))
    labels = tf.constant(np.arange(batch_size) % num_classes, tf.int32)
    corner = rng.uniform(0, 0.4, (batch_size, 2))
    boxes = tf.constant(np.concatenate([corner, corner + 0.5], 1), tf.float32)
    has_box = tf.constant(rng.uniform(size=batch_size) < 0.5)  # ILSVRC: some images have none
    plain, _ = make_step(num_classes, False)
    boxed, head = make_step(num_classes, True)
    head_only = make_head_only(head)
    features = tf.nn.relu(tf.constant(rng.normal(0, 1, (batch_size, 4096)), tf.float32))
    timed = {
        "plain": (plain, (images, labels, boxes, has_box), 1),
        "boxes": (boxed, (images, labels, boxes, has_box), 1),
        "head_only": (head_only, (features, labels, boxes, has_box), head_steps),
    }
    for name, (fn, args, _) in timed.items():
        for _ in range(2):  # trace, then one untimed call
            _time(fn, args)
        print(f"warmed up {name}", file=sys.stderr, flush=True)
    wall = {name: [] for name in timed}
    cpu = {name: [] for name in timed}
    for r in range(repeats):
        for name, (fn, args, calls) in timed.items():  # interleaved: load hits all alike
            w, c = _time(fn, args, calls)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"repeat {r + 1}: " + ", ".join(f"{n} {s[-1]:.3f}s" for n, s in wall.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    median = {n: statistics.median(s) for n, s in wall.items()}
    median_cpu = {n: statistics.median(s) for n, s in cpu.items()}
    return {
        "seconds": {n: round(s, 4) for n, s in median.items()},
        "cpu_seconds": {n: round(s, 4) for n, s in median_cpu.items()},
        "boxes_over_plain": round(median["boxes"] / median["plain"] - 1, 4),
        "head_only_over_plain": round(median["head_only"] / median["plain"], 4),
        "head_only_over_plain_cpu": round(median_cpu["head_only"] / median_cpu["plain"], 4),
        "batch_size": batch_size,
        "num_classes": num_classes,
        "repeats": repeats,
        "onednn": performance.onednn_enabled(),
        "tensorflow": tf.__version__,
    }


def main(argv):
    del argv
    f = flags.FLAGS
    print(json.dumps(run(f.batch_size, f.num_classes, f.repeats, f.head_steps)))


if __name__ == "__main__":
    app.run(main)
