"""The paper's recipe, written here as the paper states it, against configs/alexnet.cfg and the
defaults of the training code.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012. The network's own numbers (sizes, neurons, parameters, initialization,
LRN) are pinned in tests/test_model.py; the update rule in tests/test_train_optimizer.py.
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Section 5: "We trained our models using stochastic gradient descent with a batch size of 128
# examples, momentum of 0.9, and weight decay of 0.0005."
BATCH_SIZE, MOMENTUM, WEIGHT_DECAY = 128, 0.9, 0.0005
# Section 5: "The learning rate was initialized at 0.01 ... divide the learning rate by 10 when
# the validation error rate stopped improving ... reduced three times prior to termination.
# We trained the network for roughly 90 cycles through the training set".
LEARNING_RATE, LR_DIVIDED_BY, LR_DROPS, EPOCHS = 0.01, 10, 3, 90
# Section 4.2: dropout "with probability 0.5"; section 4.1: PCA colour noise with "standard
# deviation 0.1"; section 5: weights from N(0, 0.01).
DROPOUT, PCA_STD = 0.5, 0.1
# Section 3.2: the network is spread across two GPUs.
PLACEMENT = "two_towers"


def _read_flagfile(path: str) -> dict[str, str]:
    """`--name=value` lines as {name: value}; `--noname` as {name: "false"}; comments skipped."""
    values = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            assert line.startswith("--"), line
            name, _, value = line[2:].partition("=")
            if not _:
                name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
            values[name] = value
    return values


def test_alexnet_cfg_is_the_papers_recipe():
    cfg = _read_flagfile(os.path.join(REPO, "configs", "alexnet.cfg"))
    assert int(cfg["batch_size"]) == BATCH_SIZE
    assert float(cfg["momentum"]) == MOMENTUM
    assert float(cfg["weight_decay"]) == WEIGHT_DECAY
    assert float(cfg["learning_rate"]) == LEARNING_RATE
    assert cfg["schedule"] == "plateau"  # "when the validation error rate stopped improving"
    assert float(cfg["lr_decay_factor"]) == pytest.approx(1 / LR_DIVIDED_BY)
    assert int(cfg["plateau_max_drops"]) == LR_DROPS
    assert float(cfg["epochs"]) == EPOCHS and int(cfg["train_steps"]) == 0
    assert cfg["init"] == "paper"  # N(0, 0.01), biases of 1 in conv2/4/5, fc6/7 (test_model.py)
    assert float(cfg["dropout_rate"]) == DROPOUT
    assert float(cfg["pca_std"]) == PCA_STD
    # Section 2: only the mean activity is subtracted; the pixels are not otherwise scaled.
    assert cfg["mean"] == "image" and float(cfg["input_scale"]) == 1.0
    assert cfg["placement"] == PLACEMENT
    assert cfg["mixed_precision"] == "none" and cfg["xla"] == "false"


def test_training_defaults_are_the_papers_recipe():
    from alexnet_tf.training import loop as training
    from alexnet_tf.training import optimizer, steps

    config = training.TrainConfig(data_dir="d", workdir="w")
    assert config.batch_size == BATCH_SIZE
    assert config.momentum == MOMENTUM
    assert config.weight_decay == WEIGHT_DECAY
    assert config.learning_rate == LEARNING_RATE
    assert config.schedule == "plateau"
    assert config.lr_decay_factor == pytest.approx(1 / LR_DIVIDED_BY)
    assert config.plateau_max_drops == LR_DROPS
    assert config.epochs == EPOCHS
    assert config.init == "paper" and config.dropout_rate == DROPOUT
    assert config.pca_std == PCA_STD and config.mean == "image" and config.input_scale == 1.0
    # What the update step uses when it is given nothing else.
    assert steps.StepOptions(batch_size=BATCH_SIZE).weight_decay == WEIGHT_DECAY
    sgd = optimizer.make_sgd(LEARNING_RATE)
    assert sgd.momentum == MOMENTUM and not sgd.nesterov and sgd.weight_decay is None
