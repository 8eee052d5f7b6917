"""Figure 1 (section 3.1): a network with ReLUs reaches 25% training error sooner than with tanh.

    python -m alexnet_tf.relu_vs_tanh --output_dir=/tmp/figure1                 # bundled set
    python -m alexnet_tf.relu_vs_tanh --data_dir=DATA --output_dir=/tmp/figure1 # a converted set
    python -m alexnet_tf.relu_vs_tanh --network=alexnet --data_dir=DATA --output_dir=...

Trains the four-layer network of figure 1 (`alexnet_tf/model/figure1.py`, or the 2012 network
with `--network=alexnet`) once per unit and learning rate of a short sweep, keeps each unit's
fastest rate, and writes OUTPUT_DIR/relu_vs_tanh.png (figure 1) and OUTPUT_DIR/relu_vs_tanh.json:

    {"threshold": 0.25,
     "units": {"relu": {"learning_rate", "epochs": [...], "train_error": [...],
                        "epochs_to_threshold": epochs or null, "stopped"}, "tanh": {...}},
     "speedup": tanh's epochs to the threshold over relu's,
     "speedup_is_lower_bound": true when tanh never got there (then: its epochs run over relu's),
     "sweep": [{"unit", "learning_rate", "epochs_to_threshold", "final_error", ...}, ...], ...}

Without --data_dir the images are the bundled set of `alexnet_tf.data.small_images` (colour
digits on photographs, from packages: 8,985 of them, or 1,797 × --copies); with it, the training
split of a converted set. Each point of a curve is the training error of the last
--error_window of an epoch (a fifth), ten points an epoch.
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors

flags.adopt_module_key_flags(common_flags)  # --data_dir in --help

OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where relu_vs_tanh.{png,json} go.")
THRESHOLD = flags.DEFINE_float("threshold", 0.25, "Training error rate to reach (section 3.1).")
NETWORK = flags.DEFINE_enum("network", "figure1", ["figure1", "alexnet"], "Network to train.")
# None: the defaults of alexnet_tf/training/relu_vs_tanh.py (TensorFlow is imported only to run).
RELU_RATES = flags.DEFINE_list("relu_learning_rates", None, "ReLU's sweep; 0.002,0.001,0.004.")
TANH_RATES = flags.DEFINE_list("tanh_learning_rates", None, "tanh's sweep; 0.02,0.01,0.04.")
MAX_EPOCHS = flags.DEFINE_float("max_epochs", None, "Most epochs a run trains; 30.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Images per update; 32.")
INIT = flags.DEFINE_enum(
    "init", "cuda-convnet", ["cuda-convnet", "glorot"], "Figure 1 net's initial weights."
)
EXTEND_SWEEP = flags.DEFINE_integer("extend_sweep", 2, "Most rates tried past the range's edge.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "Side of figure 1's input images.")
SEED = flags.DEFINE_integer("seed", 0, "Initial weights, batch order and the bundled set.")
COPIES = flags.DEFINE_integer(
    "copies", None, "Drawings of each digit scan in the bundled set (5: 8,985 images)."
)
ERROR_WINDOW = flags.DEFINE_float(
    "error_window", None, "Epochs of batches each point's training error is over; 0.2."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not OUTPUT_DIR.value:
        raise app.UsageError("--output_dir is required")
    if COPIES.value is not None and COPIES.value < 1:
        raise app.UsageError(f"--copies must be >= 1; received {COPIES.value}")
    with tool_errors.reported("relu_vs_tanh"):
        # TensorFlow only once the flags are good.
        from alexnet_tf.data import small_images
        from alexnet_tf.results import relu_vs_tanh_figure
        from alexnet_tf.training import relu_vs_tanh

        config = relu_vs_tanh.ExperimentConfig(
            threshold=THRESHOLD.value, network=NETWORK.value, seed=SEED.value,
            figure1_image_size=IMAGE_SIZE.value, init=INIT.value,
            extend_sweep=EXTEND_SWEEP.value,
            **_given(learning_rates=_rates(relu_vs_tanh.LEARNING_RATES),
                     max_epochs=MAX_EPOCHS.value, batch_size=BATCH_SIZE.value,
                     error_window=ERROR_WINDOW.value),
        )  # fmt: skip
        config.check()
        size = config.image_size()
        if common_flags.DATA_DIR.value:
            data = small_images.load_split(common_flags.DATA_DIR.value, size)
        else:
            data = small_images.bundled_set(size, seed=SEED.value, **_given(copies=COPIES.value))
        result = relu_vs_tanh.run_experiment(data, config, progress=print)
        json_path, png_path = relu_vs_tanh_figure.write_result(result, OUTPUT_DIR.value)
    speedup = result["speedup"]
    if speedup is None:
        print("ReLU did not reach the threshold: no speed-up to report")
    else:
        bound = "at least " if result["speedup_is_lower_bound"] else ""
        print(f"ReLU reached {THRESHOLD.value:.0%} training error {bound}{speedup:.2f}x sooner")
    print(f"wrote {png_path} and {json_path}")


def _rates(defaults: dict) -> dict | None:
    """The sweep's rates per unit from the flags, or None for the library's defaults."""
    given = {"relu": RELU_RATES.value, "tanh": TANH_RATES.value}
    if not any(given.values()):
        return None
    rates = {}
    for unit, values in given.items():
        try:
            rates[unit] = [float(v) for v in values] if values else list(defaults[unit])
        except ValueError:
            raise app.UsageError(
                f"--{unit}_learning_rates must be numbers; received {values}"
            ) from None
    return rates


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def run_main() -> None:
    common_flags.run(main, "relu_vs_tanh")


if __name__ == "__main__":
    run_main()
