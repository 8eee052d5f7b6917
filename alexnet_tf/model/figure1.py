"""The four-layer convolutional network of figure 1 (section 3.1), with ReLU or tanh units.

Section 3.1: "A four-layer convolutional neural network with ReLUs (solid line) reaches a 25%
training error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons
(dashed line). The learning rates for each network were chosen independently to make training
as fast as possible. No regularization of any kind was employed."

What the paper says of the network: four layers with weights, convolutional, on CIFAR-10's
32×32 colour images. Nothing more (no sizes, no pooling, no initialization). The CIFAR-10
example that ships with the paper's own code, cuda-convnet's `layers-18pct.cfg`, is a network
of exactly four weight layers, and this module builds it:

    conv1: 32 kernels 5×5×3, padding 2        → 32×32×32, then the unit
    pool1: max, 3×3, stride 2                 → 16×16×32
    conv2: 32 kernels 5×5×32, padding 2       → 16×16×32, then the unit
    pool2: average, 3×3, stride 2             → 8×8×32
    conv3: 64 kernels 5×5×32, padding 2       → 8×8×64, then the unit
    pool3: average, 3×3, stride 2             → 4×4×64
    fc4:   10-way fully connected (1024 → 10), softmax

cuda-convnet's pools (`outputsX=0`) cover the map with ceil((n - 3) / 2) + 1 windows, the last
one clipped at the border: Keras's `padding="same"` with stride 2 gives the same n / 2 outputs.
Choices made here:

* `layers-18pct.cfg` also has two response-normalization layers (`rnorm1`, `rnorm2`, within
  each map over 3×3 neighbourhoods). They are left out: figure 1 isolates the unit, and section
  3.3 presents normalization as a separate aid to generalization (`layers-80sec.cfg`, the other
  CIFAR-10 example, has none either).
* The unit follows each convolution, before its pooling. (cuda-convnet applies its `relu` to
  pool1's output, the same thing for a max pool; for tanh under an average pool, the unit after
  the convolution is the network the paper's text describes, units that compute tanh(x).)
* Initialization: `init="cuda-convnet"` (default) draws weights from N(0, σ²) with
  `layers-18pct.cfg`'s `initW` per layer (σ = 1e-4 for conv1, 0.01 for the others) and zero
  biases, for inputs on the 0-255 scale (mean image subtracted), as that code trains them;
  `init="glorot"` uses Glorot-uniform weights, the scale under which tanh networks train best.
  Both units get the same weights for the same seed.
* The last layer is named `fc4` (the fourth weight layer, `fc10` in cuda-convnet).

    python -m alexnet_tf.relu_vs_tanh --output_dir=/tmp/figure1    # trains it with both units
"""

from __future__ import annotations

import keras

IMAGE_SIZE = 32  # CIFAR-10's images
ACTIVATIONS = ("relu", "tanh")
INITS = ("cuda-convnet", "glorot")
# layers-18pct.cfg: (name, kernels, initW). Every kernel is 5×5 with padding 2, stride 1.
CONV_LAYERS = (("conv1", 32, 1e-4), ("conv2", 32, 0.01), ("conv3", 64, 0.01))
POOLS = ("max", "average", "average")  # pool1, pool2, pool3 of layers-18pct.cfg
FC_INIT_STDDEV = 0.01  # layers-18pct.cfg: fc10 initW
KERNEL_SIZE = 5
NUM_PARAMETERS_10 = 89_578  # with 10 classes: 2,432 + 25,632 + 51,264 + 10,250 (hand count)
LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "flatten", "fc4", "predictions")


def build_figure1_net(
    num_classes: int = 10,
    *,
    activation: str = "relu",
    image_size: int = IMAGE_SIZE,
    init: str = "cuda-convnet",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Builds the four-layer network of figure 1 as a Keras functional model.

    Args:
        num_classes: size of the softmax output (10 for CIFAR-10).
        activation: "relu" (the solid line of figure 1) or "tanh" (the dashed line). Nothing
            else differs: the same layers, names, shapes and, for one seed, weights.
        image_size: side of the square RGB input; a multiple of 8 (three pools of stride 2).
        init: "cuda-convnet" or "glorot" (see the module docstring).
        seed: seed of the initializers; `None` draws from Keras's global seed.
        name: name of the model (default `figure1_<activation>`).

    Returns:
        A model from a float32 batch of mean-subtracted `image_size`² RGB images (0-255 scale)
        to class probabilities; its logits are the layer `fc4`.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; received {init!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1; received {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8, >= 8; received {image_size!r}")
    seeds = iter(range(seed, seed + 100)) if seed is not None else None

    def kernel_init(stddev):
        layer_seed = next(seeds) if seeds is not None else None
        if init == "glorot":
            return keras.initializers.GlorotUniform(seed=layer_seed)
        return keras.initializers.RandomNormal(0.0, stddev, seed=layer_seed)

    images = keras.Input((image_size, image_size, 3), name="images")
    x = images
    for (layer, kernels, stddev), pool, number in zip(CONV_LAYERS, POOLS, (1, 2, 3)):
        x = keras.layers.Conv2D(
            kernels, KERNEL_SIZE, padding="same", activation=activation,
            kernel_initializer=kernel_init(stddev), bias_initializer="zeros", name=layer,
        )(x)  # fmt: skip
        pooling = keras.layers.MaxPooling2D if pool == "max" else keras.layers.AveragePooling2D
        x = pooling(3, 2, padding="same", name=f"pool{number}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=kernel_init(FC_INIT_STDDEV), name="fc4"
    )(x)
    probs = keras.layers.Softmax(name="predictions")(logits)
    return keras.Model(images, probs, name=name or f"figure1_{activation}")
