"""Pins the network of section 3 of the paper: sizes, counts, LRN, initialization, towers."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import model as model_lib
from alexnet_tf.model.layer_table import layer_table
from alexnet_tf.model.layers import (
    CrossTowerLRN,
    LocalResponseNormalization,
    local_response_normalization,
)
from alexnet_tf.model.paper_weights import (
    get_paper_weights,
    load_paper_weights,
    save_paper_weights,
    set_paper_weights,
)


@pytest.fixture(scope="module")
def model():
    return model_lib.build_alexnet(seed=1)


@pytest.fixture(scope="module")
def he_model():
    """The demo's initialization, seeded (10 classes)."""
    return model_lib.build_alexnet(10, init="he", seed=3)


@pytest.fixture(scope="module")
def images():
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two real 427×640 photographs
    crops = np.stack([p[100 : 100 + 227, 200 : 200 + 227] for p in photos]).astype(np.float32)
    return crops - crops.mean(axis=(0, 1, 2))


def test_parameter_count_is_the_papers(model):
    assert model.count_params() == 60_965_224 == model_lib.NUM_PARAMETERS


# Section 3 ("The neurons in the fully-connected layers ..."; the network's input is
# 150,528-dimensional, and the number of neurons in the network's remaining layers is given by
# 253,440–186,624–64,896–64,896–43,264–4096–4096–1000).
PAPER_NEURONS = {
    "conv1": 253_440,
    "conv2": 186_624,
    "conv3": 64_896,
    "conv4": 64_896,
    "conv5": 43_264,
    "fc6": 4096,
    "fc7": 4096,
    "fc8": 1000,
}


def test_neurons_and_kernels_per_layer(model):
    rows = {r["layer"]: r for r in layer_table(model)}
    # conv1's 55×55 maps of 96 kernels are 290,400 neurons: the paper's 253,440 does not follow
    # from its own figure 2 (network.py explains); every other count is the paper's.
    assert {k: r["neurons"] for k, r in rows.items()} == {**PAPER_NEURONS, "conv1": 55 * 55 * 96}
    assert 55 * 55 * 96 == 290_400 != PAPER_NEURONS["conv1"]
    assert 224 * 224 * 3 == 150_528  # the input the paper counts; the network takes 227×227
    assert {k: r["kernel"] for k, r in rows.items()} == {
        "conv1": (11, 11, 3, 96),
        "conv2": (5, 5, 48, 256),
        "conv3": (3, 3, 256, 384),
        "conv4": (3, 3, 192, 384),
        "conv5": (3, 3, 192, 256),
        "fc6": (9216, 4096),
        "fc7": (4096, 4096),
        "fc8": (4096, 1000),
    }
    assert rows["conv1"]["output"] == (55, 55, 96)
    assert rows["conv5"]["output"] == (13, 13, 256)


def test_layer_names_follow_the_paper(model):
    names = {layer.name for layer in model.layers}
    for t in "ab":
        for n in ("conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4"):
            assert f"{n}_{t}" in names
        for n in ("conv5", "pool5", "fc6", "drop6", "fc7"):
            assert f"{n}_{t}" in names
    assert {"fc7", "drop7", "fc8", "predictions"} <= names
    assert model.input.shape == (None, 227, 227, 3)


def test_output_is_a_softmax(model, images):
    probs = model(images, training=False).numpy()
    assert probs.shape == (2, 1000)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _paper_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3, transcribed literally:

    b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta
    """
    channels = a.shape[-1]
    b = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        b[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo : hi + 1] ** 2, axis=-1)) ** beta
    return b


@pytest.mark.parametrize("params", [{}, {"k": 1.0, "n": 5, "alpha": 2e-5, "beta": 0.75}])
def test_lrn_matches_the_papers_formula(params):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 40, size=(2, 3, 3, 48)).astype(np.float32)  # post-ReLU magnitudes
    got = local_response_normalization(tf.constant(a), **params).numpy()
    np.testing.assert_allclose(got, _paper_lrn(a.astype(np.float64), **params), rtol=1e-5)
    # The values matter: with these magnitudes the normalization is far from the identity.
    assert np.abs(got - a).max() > 1.0


def test_lrn_values_are_builder_parameters(model, caffe_model):
    lrn = caffe_model.get_layer("norm1_a")  # built with lrn_k=1.0, lrn_alpha=2e-5
    assert (lrn.k, lrn.n, lrn.alpha, lrn.beta) == (1.0, 5, 2e-5, 0.75)
    default = model.get_layer("norm2_b")
    assert type(default) is LocalResponseNormalization
    assert (default.k, default.n, default.alpha, default.beta) == (2.0, 5, 1e-4, 0.75)


def _depends(model, images, output_layer, weight_layer):
    sub = keras.Model(model.input, model.get_layer(output_layer).output)
    kernel = model.get_layer(weight_layer).kernel
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(sub(images[:1], training=False))
    grad = tape.gradient(y, kernel)
    return grad is not None and bool(tf.reduce_any(grad != 0))


@pytest.mark.parametrize(
    "output_layer, weight_layer, connected",
    [
        ("conv2_b", "conv1_a", False),  # conv2 sees its own tower only
        ("conv2_b", "conv1_b", True),
        ("conv3_b", "conv1_a", True),  # conv3 sees both towers
        ("conv4_b", "conv3_a", False),  # conv4 and conv5 see their own tower only
        ("conv5_a", "conv4_b", False),
        ("conv5_a", "conv4_a", True),
        ("fc6_b", "conv5_a", True),  # the fully connected layers see both
        ("fc7_a", "fc6_b", True),
    ],
)
def test_towers_connect_as_in_figure_2(model, images, output_layer, weight_layer, connected):
    assert _depends(model, images, output_layer, weight_layer) == connected


def test_initialization_is_section_5(model):
    """ "We initialized the weights in each layer from a zero-mean Gaussian distribution with
    standard deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth
    convolutional layers, as well as in the fully-connected hidden layers, with the constant 1
    ... the remaining layers with the constant 0." """
    for name in ("conv1_a", "conv3_b", "fc6_a", "fc8"):
        kernel = model.get_layer(name).kernel.numpy()
        assert abs(kernel.mean()) < 1e-3
        assert kernel.std() == pytest.approx(0.01, rel=0.02)  # 17,424 draws or more: within 2%
        # Gaussian, not truncated: 0.3% of the draws lie beyond 3 standard deviations.
        assert np.mean(np.abs(kernel) > 0.03) == pytest.approx(0.0027, abs=0.001)
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for name in layers:
        for layer in [name] if name == "fc8" else [f"{name}_a", f"{name}_b"]:
            bias = model.get_layer(layer).bias.numpy()
            want = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            np.testing.assert_array_equal(bias, want, err_msg=layer)


def test_dropout_is_section_4_2(model):
    """ "setting to zero the output of each hidden neuron with probability 0.5", in the first two
    fully-connected layers."""
    rates = {layer.name: layer.rate for layer in model.layers if hasattr(layer, "rate")}
    assert rates == {"drop6_a": 0.5, "drop6_b": 0.5, "drop7": 0.5}


@pytest.mark.parametrize(
    "layer, fan_in, fan_out",
    [("conv2_a", 5 * 5 * 48, 5 * 5 * 128), ("fc6_a", 6 * 6 * 256, 2048)],
)
def test_he_init_is_available_for_the_demo(he_model, layer, fan_in, fan_out):
    """He-normal: std √(2 / fan_in); Glorot's √(2 / (fan_in + fan_out)) is 10-50% less here."""
    kernel = he_model.get_layer(layer).kernel.numpy()
    assert kernel.size > 150_000  # the sample std is within 0.5% of the true one
    he, glorot = np.sqrt(2 / fan_in), np.sqrt(2 / (fan_in + fan_out))
    assert kernel.std() == pytest.approx(he, rel=0.02)
    assert abs(kernel.std() - glorot) > 0.08 * he
    assert not he_model.get_layer(layer).bias.numpy().any()


def test_seeded_builds_are_equal(he_model):
    again = model_lib.build_alexnet(10, init="he", seed=3)
    for a, b in zip(he_model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_endpoints_give_fc7_features_and_predictions(model, images):
    endpoints = model_lib.endpoints_model(model, ["fc7", "predictions"])
    out = endpoints(images, training=False)
    assert out["fc7"].shape == (2, 4096)
    assert np.all(out["fc7"].numpy() >= 0)  # after ReLU
    np.testing.assert_allclose(out["predictions"], model(images, training=False), rtol=1e-5)
    assert model_lib.conv1_kernels(model).shape == (11, 11, 3, 96)
    with pytest.raises(ValueError, match="unknown layer names \\['fc9'\\]"):
        model_lib.endpoints_model(model, ["fc9"])


def test_paper_weights_round_trip(model, images, tmp_path):
    weights = get_paper_weights(model)
    assert weights["conv2"][0].shape == (5, 5, 48, 256)
    assert weights["fc6"][0].shape == (9216, 4096)
    other = model_lib.build_alexnet(seed=2)
    own = other.get_layer("conv4_b").kernel.numpy()
    # Through a bvlc_alexnet.npy-style file (a pickled dict saved with np.save): other's own.
    path = tmp_path / "bvlc_alexnet.npy"
    save_paper_weights(other, path)
    assert sorted(load_paper_weights(path)) == sorted(model_lib.PAPER_LAYERS)
    assert [p.name for p in tmp_path.iterdir()] == ["bvlc_alexnet.npy"]  # no temporary left
    set_paper_weights(other, weights)
    np.testing.assert_allclose(other(images), model(images), rtol=1e-5, atol=1e-7)
    set_paper_weights(other, str(path))
    np.testing.assert_array_equal(other.get_layer("conv4_b").kernel.numpy(), own)
    assert not np.array_equal(own, model.get_layer("conv4_b").kernel.numpy())


def test_paper_weights_in_the_papers_layout(model):
    """Tower a's kernels first on the output axis; fc6 rows in (h, w, c) order of pool5."""
    weights = get_paper_weights(model)
    np.testing.assert_array_equal(
        weights["conv2"][0][..., 128:], model.get_layer("conv2_b").kernel.numpy()
    )
    np.testing.assert_array_equal(
        weights["fc6"][0][:, :2048], model.get_layer("fc6_a").kernel.numpy()
    )


def test_paper_weights_reject_wrong_shapes(model):
    weights = get_paper_weights(model)
    weights["conv3"] = [np.zeros((3, 3, 256, 380)), np.zeros(380)]
    with pytest.raises(ValueError, match="'conv3': received kernel \\(3, 3, 256, 380\\)"):
        set_paper_weights(model, weights)
    with pytest.raises(ValueError, match="lack layers \\['fc8'\\]"):
        set_paper_weights(model, {k: v for k, v in weights.items() if k != "fc8"})


# ---------------------------------------------------------------- Caffe's bvlc_alexnet, in NumPy
# An independent transcription of the layers of Caffe's models/bvlc_alexnet/deploy.prototxt
# (conv1 is one layer of 96 kernels; conv2, conv4, conv5 have group: 2), in float64.
_CAFFE_KWARGS = {"lrn_k": 1.0, "lrn_alpha": 2e-5, "lrn_across_towers": True}
_CAFFE_CONVS = {  # name: (stride, pad, group)
    "conv1": (4, 0, 1),
    "conv2": (1, 2, 2),
    "conv3": (1, 1, 1),
    "conv4": (1, 1, 2),
    "conv5": (1, 1, 2),
}


def _caffe_conv_relu(x, kernel, bias, stride, pad, group):
    """ConvolutionLayer + ReLU on NHWC `x`; `kernel` is HWIO with I = channels / group."""
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    kh, kw, cin, cout = kernel.shape
    per_group = cout // group
    outputs = []
    for g in range(group):
        windows = np.lib.stride_tricks.sliding_window_view(
            x[..., g * cin : (g + 1) * cin], (kh, kw), axis=(1, 2)
        )[:, ::stride, ::stride]  # (N, OH, OW, cin, kh, kw)
        part = kernel[..., g * per_group : (g + 1) * per_group]
        outputs.append(np.tensordot(windows, part, axes=([3, 4, 5], [2, 0, 1])))
    return np.maximum(np.concatenate(outputs, axis=-1) + bias, 0.0)


def _caffe_lrn(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """LRNLayer, ACROSS_CHANNELS (lrn_layer.cpp): over all channels of the blob,

    scale_c = k + alpha / local_size * sum_{c' = c - pre_pad}^{c - pre_pad + local_size - 1} x_c'^2
    with pre_pad = (local_size - 1) / 2 and zeros beyond the edges; top = bottom * scale^-beta.
    """
    pre_pad = (local_size - 1) // 2
    channels = x.shape[-1]
    squares = np.pad(x**2, [(0, 0)] * 3 + [(pre_pad, local_size - 1 - pre_pad)])
    window = sum(squares[..., i : i + channels] for i in range(local_size))
    return x * (k + alpha / local_size * window) ** -beta


def _caffe_max_pool(x, size=3, stride=2):
    """PoolingLayer, MAX: Caffe rounds the output size up and clips the last windows."""
    height = x.shape[1]
    out = -(-(height - size) // stride) + 1
    rows = [x[:, i * stride : min(i * stride + size, height)].max(axis=1) for i in range(out)]
    y = np.stack(rows, axis=1)
    cols = [y[:, :, j * stride : min(j * stride + size, height)].max(axis=2) for j in range(out)]
    return np.stack(cols, axis=2)


def _caffe_forward(weights, images, lrn=_caffe_lrn):
    """bvlc_alexnet's forward pass; returns pool2 and the fc8 logits."""
    x = images.astype(np.float64)
    w = {name: [np.asarray(a, np.float64) for a in value] for name, value in weights.items()}
    x = _caffe_max_pool(lrn(_caffe_conv_relu(x, *w["conv1"], *_CAFFE_CONVS["conv1"])))
    pool2 = _caffe_max_pool(lrn(_caffe_conv_relu(x, *w["conv2"], *_CAFFE_CONVS["conv2"])))
    x = pool2
    for name in ("conv3", "conv4", "conv5"):
        x = _caffe_conv_relu(x, *w[name], *_CAFFE_CONVS[name])
    x = _caffe_max_pool(x).reshape(len(x), -1)  # fc6 rows in (height, width, channel) order
    x = np.maximum(x @ w["fc6"][0] + w["fc6"][1], 0)
    x = np.maximum(x @ w["fc7"][0] + w["fc7"][1], 0)
    return pool2, x @ w["fc8"][0] + w["fc8"][1]


def _per_tower(lrn):
    """The normalization of the paper's model: within each half of the channels."""
    return lambda x: np.concatenate([lrn(h) for h in np.split(x, 2, axis=-1)], axis=-1)


@pytest.fixture(scope="module")
def caffe_weights(tmp_path_factory):
    """Weights in the bvlc_alexnet.npy layout, written by NumPy alone (He-scaled, so that the
    activations are large enough for LRN to matter), as a file."""
    rng = np.random.default_rng(2012)
    shapes = {
        "conv1": (11, 11, 3, 96),
        "conv2": (5, 5, 48, 256),
        "conv3": (3, 3, 256, 384),
        "conv4": (3, 3, 192, 384),
        "conv5": (3, 3, 192, 256),
        "fc6": (9216, 4096),
        "fc7": (4096, 4096),
        "fc8": (4096, 10),
    }
    weights = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        kernel = rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32)
        weights[name] = [kernel, rng.normal(0, 0.1, shape[-1]).astype(np.float32)]
    path = tmp_path_factory.mktemp("caffe") / "bvlc_alexnet.npy"
    np.save(path, np.array(weights, dtype=object), allow_pickle=True)
    return str(path)


@pytest.fixture(scope="module")
def caffe_model(caffe_weights):
    """bvlc_alexnet's network: k=1, Caffe's alpha (1e-4 / 5), LRN over both towers; its weights."""
    model = model_lib.build_alexnet(10, **_CAFFE_KWARGS)
    set_paper_weights(model, caffe_weights)
    return model


def test_cross_tower_lrn_is_one_lrn_over_both_towers():
    a = np.random.default_rng(1).uniform(0, 300, (2, 3, 3, 96))
    layers = [CrossTowerLRN(1.0, 5, 2e-5, 0.75, tower=t) for t in model_lib.TOWERS]
    got = np.concatenate(
        [layers[0]([a[..., :48], a[..., 48:]]), layers[1]([a[..., 48:], a[..., :48]])], axis=-1
    )
    np.testing.assert_allclose(got, _caffe_lrn(a), rtol=1e-5)
    assert np.abs(got - _per_tower(_caffe_lrn)(a)).max() > 1.0  # the boundary matters here


def test_caffes_weights_give_caffes_outputs(caffe_model, caffe_weights, images, tmp_path):
    """`lrn_across_towers=True, lrn_k=1, lrn_alpha=2e-5`: bvlc_alexnet's forward pass, exactly."""
    from alexnet_tf.runs.checkpoints import load_trained_model, write_model_config

    model = caffe_model
    bgr = images[..., ::-1]  # Caffe's channel order; the mean is already subtracted
    want_pool2, want_logits = _caffe_forward(load_paper_weights(caffe_weights), bgr)
    got = model_lib.endpoints_model(model, ["pool2_a", "pool2_b", "fc8"])(bgr, training=False)
    pool2 = np.concatenate([got["pool2_a"], got["pool2_b"]], axis=-1)
    scale = np.abs(want_pool2).max()
    np.testing.assert_allclose(pool2, want_pool2, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(
        got["fc8"], want_logits, rtol=1e-3, atol=1e-4 * np.abs(want_logits).max()
    )
    # The paper's per-tower normalization is a different network for these weights.
    tower_pool2, _ = _caffe_forward(load_paper_weights(caffe_weights), bgr, _per_tower(_caffe_lrn))
    assert np.abs(tower_pool2 - want_pool2).max() > 100 * 1e-5 * scale

    # A run's model_config.json records the keyword, and the tools rebuild the same network.
    workdir = str(tmp_path)
    write_model_config(workdir, {"num_classes": 10, "model": _CAFFE_KWARGS})
    tf.train.Checkpoint(model=model).save(os.path.join(workdir, "checkpoints", "ckpt"))
    rebuilt, config, _ = load_trained_model(workdir)
    assert config["model"]["lrn_across_towers"] is True
    assert isinstance(rebuilt.get_layer("norm2_b"), CrossTowerLRN)
    np.testing.assert_array_equal(rebuilt(bgr, training=False), model(bgr, training=False))


def test_whole_model_saves_and_loads(tmp_path, images, caffe_model):
    path = str(tmp_path / "alexnet.keras")
    caffe_model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(images), caffe_model(images), rtol=1e-5, atol=1e-7)
    lrn = loaded.get_layer("norm1_b")
    assert type(lrn) is CrossTowerLRN and (lrn.tower, lrn.k, lrn.alpha) == ("b", 1.0, 2e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "num_classes must be an integer >= 1; received 0"),
        ({"num_classes": "10"}, "received '10'"),
        ({"devices": ("/GPU:0",)}, "two device names .* received \\('/GPU:0',\\)"),
        ({"devices": "/GPU:0"}, "received '/GPU:0'"),
        ({"devices": ("/CPU:0", "/XPU:7")}, "'/XPU:7' is not"),
        ({"devices": ("/CPU:0", "/GPU:9")}, "'/GPU:9' is not one of this machine's devices"),
        ({"init": "glorot"}, "init must be one of .* received 'glorot'"),
    ],
)
def test_bad_arguments_name_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        model_lib.build_alexnet(**kwargs)


def _op_devices(function, x):
    """{op name: device} of every operation in `function`'s graph for `x`, nested ones too."""
    graph = function.get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
    ops = {}

    def collect(g):
        for op in g.get_operations():
            ops[op.name] = op.device
        for f in g._functions.values():
            collect(f.graph) if hasattr(f, "graph") else None

    collect(graph)
    return ops


def test_two_towers_run_on_two_devices(tmp_path):
    """The session's two logical CPUs (tests/conftest.py) stand in for the paper's two GPUs."""
    two = model_lib.build_alexnet(10, devices=("/CPU:0", "/CPU:1"), seed=0)
    one = model_lib.build_alexnet(10, seed=1)
    set_paper_weights(one, get_paper_weights(two))
    x = np.random.default_rng(0).normal(0, 50, (2, 227, 227, 3)).astype("float32")

    # The devices of the operations that actually run, from the executed graph.
    run = tf.function(lambda x: two(x, training=False))
    ops = _op_devices(run, x)
    out_two = run(x).numpy()
    # Eagerly, every result tensor records the device its operation ran on.
    names = ["conv1_a", "conv2_b", "norm2_b", "pool5_b", "conv3_a", "fc6_b", "fc7_a", "fc8"]
    ran_on = {n: t.device for n, t in model_lib.endpoints_model(two, names)(x).items()}
    out_one = one(x, training=False).numpy()

    def placed(layer):
        # Op names look like "alexnet_1/conv2_b_1/convolution": model, layer call, op.
        return {
            d
            for name, d in ops.items()
            if re.sub(r"_\d+$", "", name.split("/")[1] if "/" in name else "") == layer and d
        }

    for layer, cpu in [
        ("conv2_a", "CPU:0"),
        ("conv2_b", "CPU:1"),
        ("conv5_b", "CPU:1"),
        ("norm1_b", "CPU:1"),
        ("fc6_b", "CPU:1"),
        ("fc6_a", "CPU:0"),
    ]:
        devices = placed(layer)
        assert devices and all(d.endswith(cpu) for d in devices), (layer, devices)
    for weight in two.weights:
        tower = weight.path.split("/")[0]
        if tower.endswith(("_a", "_b")):
            want = "CPU:1" if tower.endswith("_b") else "CPU:0"
            assert weight.value.device.endswith(want), (weight.path, weight.value.device)
    for layer, device in ran_on.items():
        assert device.endswith("CPU:1" if layer.endswith("_b") else "CPU:0"), (layer, device)
    assert np.abs(out_two - out_one).max() < 1e-5

    # A checkpoint of the one-device network restores into the two-device one.
    ckpt = tf.train.Checkpoint(model=one).save(str(tmp_path / "ckpt"))
    back = model_lib.build_alexnet(10, devices=("/CPU:0", "/CPU:1"), seed=2)
    tf.train.Checkpoint(model=back).restore(ckpt).assert_existing_objects_matched()
    assert np.abs(back(x, training=False).numpy() - out_one).max() < 1e-5
