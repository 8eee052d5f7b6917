"""How close the network runs to the machine's limit: training, inference, ten patches.

In one process, after warm-up, with the median of `--repeats` interleaved repetitions:

* the dense float32 matrix multiply rate through TensorFlow (`matmul_gflops`, the limit);
* training images/s for the full model (forward, backward, weight decay, SGD-momentum update, the
  step of alexnet_tf/training/steps.py) at `--batch_size`;
* inference images/s at `--batch_size`, and ten-patch evaluation images/s (section 4.1: ten
  227×227 crops of a 256×256 image, averaged softmax; `--batch_size` crops per forward pass);
* achieved GFLOP/s and the fraction of the matrix multiply rate for each. One forward pass at
  227×227 costs 724,406,816 multiply-adds (1.449 GFLOP); a training step about three times that.

`--mixed_precision` lists the Keras policies to measure in the same run, interleaved: `none`
(float32) gives the keys above; `bfloat16` or `float16` gives the same keys prefixed with the
policy (`bfloat16_train_images_per_sec`, ...), the matrix multiply rate in that dtype
(`bfloat16_matmul_gflops`), each measure's fraction of it, and with `none` measured too the
speed-up over float32 (`bfloat16_train_speedup`). Weights stay float32 (Keras mixed policies).

`--torch_python=PYTHON` (a Python with PyTorch) adds the same network in PyTorch, float32 and
its CPU bfloat16 autocast (`benchmarks/torch_alexnet.py`), timed in the same repetitions:
`torch_train_images_per_sec`, `torch_bfloat16_train_images_per_sec`, ..., and each of ours over
PyTorch's in the same precision (`bfloat16_train_vs_torch`, `train_vs_torch`).

It prints one JSON line. The inputs are real photographs (scikit-learn's sample images).

    python benchmarks/model_speed.py                       # batch 128, 3 repetitions
    python benchmarks/model_speed.py --mixed_precision=none,bfloat16
    python benchmarks/model_speed.py --batch_size=32 --repeats=2 --measure=train
    python benchmarks/model_speed.py --mixed_precision=none,bfloat16 --torch_python=PY
    python benchmarks/model_speed.py --jit_compile --intra_op_threads=2 --inter_op_threads=1

oneDNN is switched on (`alexnet_tf.cli.performance.enable_onednn()`) before TensorFlow is imported
unless the environment already says otherwise; run with `TF_ENABLE_ONEDNN_OPTS=0` to measure
TensorFlow's own (Eigen) kernels.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.cli import performance  # noqa: E402

performance.enable_onednn()  # before TensorFlow is imported: it reads the setting only then

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from photos import real_images  # noqa: E402  (benchmarks/photos.py)
from torch_alexnet import Worker  # noqa: E402  (benchmarks/torch_alexnet.py; imports no torch)

from alexnet_tf.model import IMAGE_SIZE, build_alexnet, endpoints_model, precision  # noqa: E402
from alexnet_tf.training import optimizer  # noqa: E402

FORWARD_MULTIPLY_ADDS = 724_406_816  # per 227×227 image
FORWARD_GFLOP = 2 * FORWARD_MULTIPLY_ADDS / 1e9
TRAIN_GFLOP = 3 * FORWARD_GFLOP  # forward, backward to the inputs, backward to the weights
PATCHES = 10  # section 4.1
MEASURES = ("train", "infer", "ten_patch")
POLICIES = ("none", "bfloat16", "float16")
TORCH_PRECISIONS = {"none": "float32", "bfloat16": "bfloat16"}  # PyTorch's CPU autocast

flags.DEFINE_integer(
    "batch_size", 128, "Images per training/inference batch (crops for ten-patch)."
)
flags.DEFINE_integer("repeats", 3, "Timed repetitions of each measurement; the median is kept.")
flags.DEFINE_integer("steps", 1, "Calls per timed repetition.")
flags.DEFINE_integer("warmup", 1, "Untimed calls of each function after tracing.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matrices of the matmul rate.")
flags.DEFINE_list("measure", list(MEASURES), f"Which of {MEASURES} to measure.")
flags.DEFINE_bool("jit_compile", False, "Compile the training and inference steps with XLA.")
flags.DEFINE_integer("intra_op_threads", 0, "Threads inside one op (0: TensorFlow's default).")
flags.DEFINE_integer("inter_op_threads", 0, "Ops run at once (0: TensorFlow's default).")
flags.DEFINE_integer("num_classes", 1000, "Classes of the softmax.")
flags.DEFINE_list(
    "mixed_precision", ["none"], f"Policies to measure in one run, some of {POLICIES}."
)
flags.DEFINE_integer(
    "profile_top", 0, "> 0: after timing, trace one training step per policy and report the "
    "ops that took the most time (summed over threads), this many.",
)  # fmt: skip
flags.DEFINE_string(
    "torch_python", None, "A Python with PyTorch: time the same network there too, in the same "
    "repetitions (float32, and bfloat16 autocast for the bfloat16 policy).",
)  # fmt: skip


def _time(fn, args, steps: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds per call of `fn(*args)`, waiting for the result.

    On a machine shared with other work the CPU seconds are the steadier figure: they do not
    count the time this process waits for a core.
    """
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


# What an op of the training step is for, from its name in the trace ("scope/name:OpType").
_GROUPS = (
    ("update (SGD on float32 variables)", ("sgd",)),
    ("weight decay (L2 penalty and its gradient)", ("Square", "Sum_", "AddN", "Tile")),
    ("casts", (":Cast",)),
    ("LRN and its gradient", (":LRN",)),
    ("convolutions", ("Conv2D", "Conv2DBackprop")),
    ("matrix multiplies", ("MatMul",)),
    ("pooling", ("MaxPool",)),
)


def profile(fn, args, top: int) -> dict:
    """Traces one call of `fn` with TensorFlow's profiler; the ops' summed thread time in ms.

    Returns:
        {"top": [[op, ms], ...] (the `top` longest, by op name), "groups": {what: ms},
         "total_ms": the sum over all ops}. Ops run on two threads at once, so the total can
        exceed the wall time of the call.
    """
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    _time(fn, args, 1)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            _time(fn, args, 1)
        finally:
            tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    per_op = {}
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):  # the executor's threads: one event per op
            continue
        for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            # "scope/name:OpType"; the rest ("ExecutorState::Process", ...) is the executor's.
            if ":" in name and "::" not in name:
                per_op[name] = per_op.get(name, 0.0) + event.duration_ps / 1e9
    groups = {}
    for name, ms in per_op.items():
        what = next((g for g, keys in _GROUPS if any(k in name for k in keys)), "other")
        groups[what] = groups.get(what, 0.0) + ms
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return {
        "top": [[name, round(ms, 1)] for name, ms in ranked],
        "groups": {g: round(ms, 1) for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])},
        "total_ms": round(sum(per_op.values()), 1),
    }


def make_functions(
    batch_size: int, jit_compile: bool, num_classes: int = 1000, policy: str = "none"
) -> dict:
    """The functions to time, each with its arguments and the GFLOP and images of one call.

    The model is built under Keras's `mixed_{policy}` policy (float32 for "none").
    """
    with precision.policy_scope(policy):
        model = build_alexnet(num_classes, seed=0)
    logits_model = endpoints_model(model, ["fc8"])
    sgd = optimizer.make_sgd(0.01)
    sgd.build(model.trainable_variables)
    decayed = optimizer.decayed_weights(model)
    jit = jit_compile or None

    @tf.function(jit_compile=jit)
    def train_step(images, labels):
        # The update step of alexnet_tf/training/steps.py on one device.
        with tf.GradientTape() as tape:
            logits = tf.cast(logits_model(images, training=True)["fc8"], tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            loss = tf.reduce_mean(per_example) + optimizer.l2_penalty(decayed)
        grads = tape.gradient(loss, model.trainable_variables)
        sgd.apply(grads, model.trainable_variables)
        return loss

    @tf.function(jit_compile=jit)
    def infer(images):
        return model(images, training=False)

    @tf.function(jit_compile=jit)
    def ten_patch(images):
        # Section 4.1: four corners, centre, and their reflections; softmax averaged per image.
        size, side = IMAGE_SIZE, images.shape[1]
        far, mid = side - size, (side - size) // 2
        offsets = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
        five = tf.stack([images[:, y : y + size, x : x + size] for y, x in offsets], axis=1)
        crops = tf.concat([five, tf.reverse(five, axis=[3])], axis=1)
        probs = model(tf.reshape(crops, (-1, size, size, 3)), training=False)
        return tf.reduce_mean(tf.reshape(probs, (-1, PATCHES, num_classes)), axis=1)

    images = tf.constant(real_images(batch_size, IMAGE_SIZE))
    labels = tf.constant(np.arange(batch_size) % num_classes, tf.int32)
    photos = tf.constant(real_images(max(1, batch_size // PATCHES), 256))
    patch_images = photos.shape[0]
    return {
        "train": (train_step, (images, labels), batch_size * TRAIN_GFLOP, batch_size),
        "infer": (infer, (images,), batch_size * FORWARD_GFLOP, batch_size),
        "ten_patch": (
            ten_patch,
            (photos,),
            patch_images * PATCHES * FORWARD_GFLOP,
            patch_images,
        ),
    }


def make_matmul(size: int, dtype: tf.DType = tf.float32):
    a = tf.constant(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda a: tf.matmul(a, a))
    return matmul, (a,), 2 * size**3 / 1e9


def run(
    batch_size: int = 128,
    repeats: int = 3,
    steps: int = 1,
    warmup: int = 1,
    measure: tuple[str, ...] = MEASURES,
    jit_compile: bool = False,
    matmul_size: int = 2048,
    num_classes: int = 1000,
    policies: tuple[str, ...] = ("none",),
    profile_top: int = 0,
    torch_python: str | None = None,
) -> dict:
    """Measures and returns the figures of the JSON line (see the module docstring)."""
    unknown = sorted(set(measure) - set(MEASURES))
    if unknown:
        raise ValueError(f"--measure: unknown {unknown}; expected some of {MEASURES}")
    bad = sorted(set(policies) - set(POLICIES))
    if bad or not policies:
        raise ValueError(
            f"--mixed_precision: received {list(policies)}; expected some of {POLICIES}"
        )
    timed = {}
    for policy in policies:
        prefix = "" if policy == "none" else f"{policy}_"
        dtype = tf.float32 if policy == "none" else tf.as_dtype(policy)
        timed[f"{prefix}matmul"] = make_matmul(matmul_size, dtype) + (0,)
        functions = make_functions(batch_size, jit_compile, num_classes, policy)
        timed.update({prefix + k: functions[k] for k in MEASURES if k in measure})
    worker = None
    if torch_python:
        folder = tempfile.mkdtemp(prefix="model_speed_")
        photos = real_images(max(1, batch_size // PATCHES), 256)
        worker = Worker(torch_python, real_images(batch_size, IMAGE_SIZE), photos, folder)
        for policy in (p for p in policies if p in TORCH_PRECISIONS):
            prefix = "" if policy == "none" else f"{policy}_"
            for m in (m for m in MEASURES if m in measure):
                gflop, images = timed[prefix + m][2:]
                timed[f"torch_{prefix}{m}"] = (worker, (m, TORCH_PRECISIONS[policy]), gflop, images)

    def time_call(fn, args, steps):
        return fn.time(*args, steps) if fn is worker else _time(fn, args, steps)

    for name, (fn, args, *_) in timed.items():
        start = time.perf_counter()
        for _ in range(1 + warmup):  # the first call traces
            time_call(fn, args, 1)
        print(f"warm-up {name}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    seconds = {name: [] for name in timed}
    cpu_seconds = {name: [] for name in timed}
    for r in range(repeats):
        # Interleaved, so that other load on a shared machine hits all measurements alike.
        for name, (fn, args, *_) in timed.items():
            matmul_steps = max(3, steps)
            wall, cpu = time_call(fn, args, matmul_steps if name.endswith("matmul") else steps)
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
        print(
            f"repeat {r + 1}/{repeats}: "
            + ", ".join(f"{n} {s[-1]:.3f}s" for n, s in seconds.items()),
            file=sys.stderr,
            flush=True,
        )
    median = {name: statistics.median(s) for name, s in seconds.items()}
    median_cpu = {name: statistics.median(s) for name, s in cpu_seconds.items()}
    result = {}
    for policy in policies:
        prefix = "" if policy == "none" else f"{policy}_"
        matmul = timed[f"{prefix}matmul"][2]
        result[f"{prefix}matmul_gflops"] = round(matmul / median[f"{prefix}matmul"], 1)
        for measured in (m for m in MEASURES if m in measure):
            name = prefix + measured
            _, _, gflop, images = timed[name]
            achieved = gflop / median[name]
            result[f"{name}_images_per_sec"] = round(images / median[name], 2)
            result[f"{name}_gflops"] = round(achieved, 1)
            result[f"{name}_fraction_of_matmul"] = round(
                achieved / result[f"{prefix}matmul_gflops"], 3
            )
            # Per CPU-second of this process: steadier when other work shares the cores.
            cpu_rate = (gflop / median_cpu[name]) / (matmul / median_cpu[f"{prefix}matmul"])
            result[f"{name}_cpu_fraction_of_matmul"] = round(cpu_rate, 3)
            result[f"{name}_cpu_seconds"] = round(median_cpu[name], 3)
            if prefix and "none" in policies:
                result[f"{name}_speedup"] = round(median[measured] / median[name], 2)
                result[f"{name}_cpu_speedup"] = round(median_cpu[measured] / median_cpu[name], 2)
    if worker:
        worker.close()
        result["torch"] = worker.info
        for name in (n for n in timed if n.startswith("torch_")):
            ours = name.removeprefix("torch_")
            images = timed[name][3]
            result[f"{name}_images_per_sec"] = round(images / median[name], 2)
            result[f"{name}_cpu_seconds"] = round(median_cpu[name], 3)
            result[f"{ours}_vs_torch"] = round(median[name] / median[ours], 2)
    if profile_top and "train" in measure:
        for policy in policies:
            prefix = "" if policy == "none" else f"{policy}_"
            fn, args, *_ = timed[f"{prefix}train"]
            result[f"{prefix}train_profile"] = profile(fn, args, profile_top)
    result.update(
        batch_size=batch_size,
        repeats=repeats,
        jit_compile=jit_compile,
        mixed_precision=list(policies),
        onednn=performance.onednn_enabled(),
        threads=performance.thread_settings(),
        tensorflow=tf.__version__,
    )
    return result


def main(argv):
    del argv
    flags_ = flags.FLAGS
    performance.configure_threads(flags_.intra_op_threads, flags_.inter_op_threads)
    try:
        result = run(
            flags_.batch_size,
            flags_.repeats,
            flags_.steps,
            flags_.warmup,
            tuple(flags_.measure),
            flags_.jit_compile,
            flags_.matmul_size,
            flags_.num_classes,
            tuple(flags_.mixed_precision),
            flags_.profile_top,
            flags_.torch_python,
        )
    except ValueError as e:
        sys.exit(f"model_speed.py: {e}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
