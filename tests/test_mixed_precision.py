"""Half precision: LRN in bfloat16/float16, the real network's step under each policy, `auto`'s
choice, a bfloat16 run's checkpoint in float32 tools, and the bfloat16 SavedModel.

Expected values come from float32 (a NumPy LRN, the float32 network on the same weights and
images); the tolerances are the dtype's: bfloat16 keeps 8 bits of mantissa (relative step
2^-8 = 0.4%), float16 11 bits (0.05%).
"""

import dataclasses
import logging as std_logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_sample_images

from alexnet_tf.data.augment import make_normalizer
from alexnet_tf.data.input_pipeline import make_train_dataset
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.model import build_alexnet, layers, precision
from alexnet_tf.training import steps
from alexnet_tf.training.config import TrainConfig
from alexnet_tf.training.state import create_train_state

HALF = {"bfloat16": tf.bfloat16, "float16": tf.float16}
EPS = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
PLAIN = ["fpu", "sse2", "avx2", "fma"]
AVX512 = [*PLAIN, "avx512f", "avx512bw", "avx512_vnni"]  # bfloat16 only emulated
AVX512_BF16 = [*AVX512, "avx512_bf16"]  # AMD Zen 4: no AMX
AMX = [*AVX512_BF16, "amx_bf16", "amx_tile", "amx_int8"]


# --- the LRN of section 3.3, written out in NumPy ------------------------------------------
def numpy_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta."""
    a = a.astype(np.float64)
    channels, half = a.shape[-1], n // 2
    out = np.empty_like(a)
    for i in range(channels):
        window = a[..., max(0, i - half) : min(channels, i + half + 1)]
        out[..., i] = a[..., i] / (k + alpha * np.sum(window**2, axis=-1)) ** beta
    return out


def photo_maps(channels=12, size=24):
    """Non-negative 'feature maps' [2, size, size, channels]: crops of the two sample photographs
    (0-255, so that alpha * sum is ~1-30, the range where the normalization bites)."""
    photos = load_sample_images().images
    maps = [
        np.concatenate(
            [p[40 * c : 40 * c + size, 30 * c : 30 * c + size] for c in range(channels // 3)], -1
        )
        for p in photos
    ]
    return np.stack(maps).astype(np.float32)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lrn_in_half_precision_matches_the_float32_formula(dtype):
    maps = photo_maps()
    expected = numpy_lrn(maps)
    lit = maps > 0
    assert np.ptp(maps[lit] / expected[lit]) > 1.0  # the normalization changes values a lot
    lrn = layers.LocalResponseNormalization(dtype=f"mixed_{dtype}")
    out = lrn(tf.constant(maps))
    assert out.dtype == HALF[dtype]
    # Rounding of the input (which the output follows with power ~1) and of the output.
    np.testing.assert_allclose(out.numpy().astype(np.float64), expected, rtol=3 * EPS[dtype])
    with tf.GradientTape() as tape:  # the gradient runs too (float32's LRNGrad inside)
        x = tf.constant(maps, HALF[dtype])
        tape.watch(x)
        y = tf.reduce_sum(lrn(x))
    grad = tape.gradient(y, x)
    assert grad.dtype == HALF[dtype] and np.all(np.isfinite(grad.numpy().astype(np.float32)))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cross_tower_lrn_in_half_precision_matches_the_formula_over_both_towers(dtype):
    maps = photo_maps(channels=12)
    a, b = maps[..., :6], maps[..., 6:]
    expected = numpy_lrn(maps)  # one normalization over tower a's maps then b's
    for tower, own, other, want in (("a", a, b, expected[..., :6]), ("b", b, a, expected[..., 6:])):
        lrn = layers.CrossTowerLRN(tower=tower, dtype=f"mixed_{dtype}")
        out = lrn([tf.constant(own), tf.constant(other)])
        assert out.dtype == HALF[dtype]
        np.testing.assert_allclose(out.numpy().astype(np.float64), want, rtol=3 * EPS[dtype])


# --- auto's choice --------------------------------------------------------------------------
def test_auto_picks_bfloat16_only_where_it_is_faster():
    choose = precision.choose
    assert choose("auto", cpu_flags=AMX).policy == "bfloat16"
    # AVX512_BF16 without AMX measured 1.6x float32 (BUILD.md, "Half precision").
    assert choose("auto", cpu_flags=AVX512_BF16).policy == "bfloat16"
    assert choose("auto", cpu_flags=[*AVX512, "amx_bf16", "amx_tile"]).policy == "bfloat16"
    assert choose("auto", cpu_flags=AVX512).policy == "none"
    assert choose("auto", cpu_flags=PLAIN).policy == "none"
    assert choose("auto", cpu_flags=None).policy == "none"  # no /proc/cpuinfo: not Linux
    assert choose("auto", cpu_flags=PLAIN, gpus=[(9, 0)]).policy == "bfloat16"
    assert choose("auto", cpu_flags=AMX, gpus=[(8, 0)]).policy == "bfloat16"
    assert choose("auto", cpu_flags=AMX, gpus=[(7, 5)]).policy == "none"  # the GPU decides
    assert choose("auto", cpu_flags=AMX, gpus=[(8, 6), (7, 0)]).policy == "none"  # the oldest
    assert choose("none", cpu_flags=AMX, gpus=[(9, 0)]).policy == "none"
    choice = choose("auto", cpu_flags=AVX512)
    assert "neither amx_bf16 nor avx512_bf16" in choice.reason and choice.warning is None
    assert choice.keras_policy == "float32" and choice.compute_dtype == "float32"
    assert "auto" in choice.log_line() and "float32" in choice.log_line()
    choice = choose("auto", cpu_flags=AVX512_BF16)
    assert choice.keras_policy == "mixed_bfloat16" and "avx512_bf16" in choice.log_line()
    with pytest.raises(ValueError, match="received 'half'"):
        choose("half", cpu_flags=AMX)


def test_a_onednn_isa_cap_below_bfloat16_makes_auto_pick_float32(monkeypatch):
    usable = precision.usable_cpu_flags
    assert usable(AMX, None) == AMX and usable(AMX, "ALL") == AMX and usable(None, "AVX2") is None
    assert usable(AMX, "avx512_core_amx") == AMX
    assert usable(AMX, "AVX512_CORE_BF16") == [*AVX512_BF16, "amx_tile", "amx_int8"]
    for cap in ("AVX512_CORE", "AVX512_CORE_VNNI", "AVX2"):
        assert precision.choose("auto", cpu_flags=usable(AMX, cap)).policy == "none"
    monkeypatch.setattr(precision, "read_cpu_flags", lambda: list(AMX))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    choice = precision.resolve("auto")
    assert choice.policy == "none" and "ONEDNN_MAX_CPU_ISA=AVX512_CORE" in choice.log_line()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert precision.resolve("auto").policy == "bfloat16"


def test_explicit_half_precision_that_is_slower_warns_and_names_auto():
    for requested, flags in (("bfloat16", AVX512), ("bfloat16", PLAIN), ("float16", AMX)):
        choice = precision.choose(requested, cpu_flags=flags)
        assert choice.policy == requested  # what was asked for runs, with a warning
        assert "slower" in choice.warning and "--mixed_precision=auto" in choice.warning
    assert precision.choose("bfloat16", cpu_flags=AMX).warning is None
    assert precision.choose("bfloat16", cpu_flags=AVX512_BF16).warning is None
    assert precision.choose("bfloat16", cpu_flags=None, gpus=[(8, 0)]).warning is None
    assert "slower" in precision.choose("bfloat16", cpu_flags=None, gpus=[(7, 0)]).warning
    assert precision.choose("float16", cpu_flags=None, gpus=[(7, 0)]).warning is None


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n"
        "\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    assert precision.read_cpu_flags(str(cpuinfo)) == ["fpu", "avx512_bf16", "amx_bf16", "amx_tile"]
    assert precision.read_cpu_flags(str(tmp_path / "missing")) is None


# --- one step of the real network under each policy ----------------------------------------
@pytest.fixture(scope="module")
def real_batch(demo_data_dir):
    manifest = load_manifest(demo_data_dir)
    dataset = make_train_dataset(manifest.split("train").files, 2, seed=0, deterministic=True)
    images, labels = next(iter(dataset))
    normalizer = make_normalizer(manifest, mean="image", pca_std=0.0, input_scale=1 / 32)
    return demo_data_dir, images, labels, normalizer


def _state(data_dir, workdir, normalizer, policy):
    config = TrainConfig(
        data_dir=data_dir, workdir=workdir, mixed_precision=policy, init="he", seed=0,
        dropout_rate=0.0, batch_size=2, learning_rate=0.01,
    )  # fmt: skip
    return create_train_state(
        config, tf.distribute.get_strategy(), 10, normalizer, build_model=build_alexnet
    )


@pytest.fixture(scope="module")
def states(real_batch, tmp_path_factory):
    data_dir, _, _, normalizer = real_batch
    workdir = str(tmp_path_factory.mktemp("states"))
    return {p: _state(data_dir, workdir, normalizer, p) for p in ("none", "bfloat16", "float16")}


def _loss_and_gradients(state, images, labels):
    options = steps.StepOptions(batch_size=2, weight_decay=0.0)
    seed = tf.constant([0, 0], tf.int64)
    grads, sums = steps.loss_and_gradients(state, options, images, labels, seed)
    if state.loss_scaling:  # the gradients of the scaled loss
        scale = float(state.optimizer.scale_loss(tf.constant(1.0)))
        grads = [g / scale for g in grads]
    return float(sums[0]), [g.numpy().astype(np.float64) for g in grads]


# Whole-layer gradient error (|g - g32| / |g32|) allowed below fc8. A conv kernel's gradient sums
# ~6,000 products of mixed sign per weight (55×55 positions × 2 images for conv1), which cancel:
# float32 itself is ~1e-3 off exact arithmetic there (test_model_speed_equivalence.py), and
# rounding 8 layers deep into bfloat16 (float16) measured up to 0.29 (0.07) in conv1's bias.
GRADIENT_TOLERANCE = {"bfloat16": 0.4, "float16": 0.1}


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_real_network_step_in_half_precision_matches_float32(states, real_batch, policy):
    _, images, labels, _ = real_batch
    reference, state = states["none"], states[policy]
    assert state.mixed_precision.policy == policy
    assert state.model.get_layer("conv1_a").compute_dtype == policy
    assert state.model.get_layer("norm1_a").compute_dtype == policy
    assert {v.dtype for v in state.model.weights} == {"float32"}  # variables stay float32
    assert state.loss_scaling == (policy == "float16")
    if state.loss_scaling:
        # The starting scale 2^15 overflows fc8's float16 gradient on the first step (the
        # optimizer then skips the step and halves the scale); compare at a settled scale.
        state.optimizer.dynamic_scale.assign(2.0**10)
    for ours, theirs in zip(state.model.weights, reference.model.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())  # same seeded start
    loss32, grads32 = _loss_and_gradients(reference, images, labels)
    loss, grads = _loss_and_gradients(state, images, labels)
    assert np.isfinite(loss) and loss == pytest.approx(loss32, rel=4 * EPS[policy])
    for g, g32, v in zip(grads, grads32, state.model.trainable_variables, strict=True):
        error = np.linalg.norm(g - g32) / np.linalg.norm(g32)
        cosine = np.sum(g * g32) / (np.linalg.norm(g) * np.linalg.norm(g32))
        # fc8's gradient (logits error times fc7) has no cancellation to amplify rounding.
        tolerance = 8 * EPS[policy] if v.path.startswith("fc8") else GRADIENT_TOLERANCE[policy]
        assert error < tolerance and cosine > 1 - tolerance**2, (v.path, error, cosine)


def test_float16_overflow_skips_the_update_and_lowers_the_loss_scale(states, real_batch):
    _, images, labels, _ = real_batch
    state = states["float16"]
    options = steps.StepOptions(batch_size=2, clip_gradient_norm=10.0)
    before = [v.numpy() for v in state.model.trainable_variables]
    state.optimizer.dynamic_scale.assign(1e30)  # scaled gradients overflow float16
    sums = steps.train_step(state, options, images, labels, tf.constant(0, tf.int64))
    assert np.isfinite(float(sums[0]))  # the loss itself is fine: the run goes on
    assert float(state.optimizer.dynamic_scale) == pytest.approx(5e29)
    for v, old in zip(state.model.trainable_variables, before, strict=True):
        np.testing.assert_array_equal(v.numpy(), old)
    state.optimizer.dynamic_scale.assign(2.0**10)
    steps.train_step(state, options, images, labels, tf.constant(1, tf.int64))
    assert not np.array_equal(state.model.get_layer("fc8").kernel.numpy(), before[-2])


def test_explicit_bfloat16_on_a_cpu_without_it_logs_a_warning(
    real_batch, tmp_path, monkeypatch, caplog
):
    data_dir, _, _, normalizer = real_batch
    monkeypatch.setattr(precision, "read_cpu_flags", lambda: list(AVX512))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    with caplog.at_level(std_logging.INFO):
        state = _state(data_dir, str(tmp_path), normalizer, "bfloat16")
    assert state.model.get_layer("fc8").compute_dtype == "bfloat16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == std_logging.WARNING]
    assert any("slower" in w and "--mixed_precision=auto" in w for w in warnings), warnings
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build


# --- a bfloat16 run's checkpoint in float32, and the bfloat16 SavedModel --------------------
def test_a_checkpoint_resumes_in_any_precision(tools_data_dir, tmp_path):
    """bfloat16, then float32, then float16, in one run's folder: the weights stay float32 and
    float16's loss scaling adds no checkpoint objects, so each resumes the one before."""
    from tiny_runs import tiny_alexnet

    from alexnet_tf.runs.checkpoints import read_model_config
    from alexnet_tf.training import loop as training

    config = _one_step_config(tools_data_dir, tmp_path / "run")
    first = training.train(config, build_model=tiny_alexnet)
    assert first.checkpoint.endswith("ckpt-1") and np.isfinite(first.loss)
    assert read_model_config(config.workdir)["mixed_precision"] == "bfloat16"
    for step, policy in ((2, "none"), (3, "float16")):
        changed = dataclasses.replace(config, train_steps=step, mixed_precision=policy)
        resumed = training.train(changed, build_model=tiny_alexnet)
        assert resumed.step == step and resumed.checkpoint.endswith(f"ckpt-{step}")
        assert np.isfinite(resumed.loss)


def test_the_tools_rebuild_a_bfloat16_run_of_the_real_network_in_float32(tools_data_dir, tmp_path):
    from alexnet_tf.results import saved_model
    from alexnet_tf.results.trained_models import CheckpointSource
    from alexnet_tf.training import loop as training

    config = _one_step_config(tools_data_dir, tmp_path / "run")
    assert training.train(config).checkpoint.endswith("ckpt-1")
    # model_config.json says bfloat16; the tools rebuild the network in float32, and every one
    # of its variables finds its value in the checkpoint (the restore asserts it).
    source = CheckpointSource(config.workdir)
    assert source.config["mixed_precision"] == "bfloat16"
    assert source.model.get_layer("fc8").compute_dtype == "float32"
    loaded = tf.saved_model.load(saved_model.export(config.workdir, str(tmp_path / "export")))
    assert loaded.compute_dtype.numpy() == b"float32"
    crops = tf.zeros([1, 227, 227, 3], tf.uint8)
    assert loaded.predict_crops(crops)["predictions"].dtype == tf.float32


def _one_step_config(data_dir, workdir):
    from alexnet_tf.training import loop as training

    return training.TrainConfig(
        data_dir=data_dir, workdir=str(workdir), train_steps=1, batch_size=2,
        eval_every_steps=0, log_every_steps=1, checkpoint_every_steps=100, init="he",
        input_scale=1 / 64, shuffle_buffer=4, seed=1, mixed_precision="bfloat16",
    )  # fmt: skip


def _validation_crops(data_dir, count=6):
    from alexnet_tf.data.input_pipeline import make_eval_dataset

    manifest = load_manifest(data_dir)
    dataset = make_eval_dataset(manifest.split("validation").files, count)
    return next(iter(dataset))[0]


def test_bfloat16_export_agrees_with_float32_on_real_images(
    tools_workdir, tools_data_dir, exported_model, tmp_path
):
    from alexnet_tf.results import saved_model

    with pytest.raises(ValueError, match="--compute_dtype must be one of"):
        saved_model.export(tools_workdir, str(tmp_path / "bad"), compute_dtype="float8")
    assert not (tmp_path / "bad").exists()
    path = saved_model.export(tools_workdir, str(tmp_path / "bf16"), compute_dtype="bfloat16")
    half, full = tf.saved_model.load(path), tf.saved_model.load(exported_model)
    assert half.compute_dtype.numpy() == b"bfloat16"
    assert set(half.signatures) == set(full.signatures)
    crops = _validation_crops(tools_data_dir)
    ours, theirs = half.predict_crops(crops), full.predict_crops(crops)
    for name in ("predictions", "fc7"):
        assert ours[name].dtype == tf.float32  # the outputs stay float32
    p, p32 = ours["predictions"].numpy(), theirs["predictions"].numpy()
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)  # a float32 softmax
    np.testing.assert_allclose(p, p32, atol=16 * EPS["bfloat16"] * p32.max())
    f, f32 = ours["fc7"].numpy(), theirs["fc7"].numpy()
    assert np.linalg.norm(f - f32) / np.linalg.norm(f32) < 16 * EPS["bfloat16"]
    np.testing.assert_array_equal(half.conv1_kernels().numpy(), full.conv1_kernels().numpy())
    jpeg = tf.io.encode_jpeg(crops[0])
    served = half.signatures["serving_default"](images=tf.stack([jpeg, b"not an image"]))
    assert served["valid"].numpy().tolist() == [True, False]
    assert served["top_k_probabilities"].dtype == tf.float32
