r"""Labels new images with a trained network: top-k classes (and boxes), as evaluate sees them.

    python -m alexnet_tf.predict --model=runs/mine photo.jpg holiday/
    python -m alexnet_tf.predict --model=exported/mine --ten_patch --output=labels.csv mine/val

--model is a training WORKDIR (its latest checkpoint), a ckpt-N prefix or a SavedModel of
alexnet_tf.export. Each image gets the centre patch (section 4.1; --ten_patch: the ten patches,
softmax averaged), the preprocessing of `alexnet_tf.evaluate`. Folders are searched recursively.
Prints each image's guesses; --output writes one row per image (.csv, or .jsonl with
{"image", "top_k": [{"class", "text", "probability"}], "boxes" (with the box head), "error"}),
atomically. A file that is not an image is named and skipped; its row gives the reason.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ warnings (one per file that fails to decode) would bury the rows.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tqdm  # noqa: E402
from absl import app, flags  # noqa: E402

from alexnet_tf.cli import shared_flags as common_flags  # noqa: E402
from alexnet_tf.cli import tool_errors  # noqa: E402
from alexnet_tf.results import predictions  # noqa: E402

flags.adopt_module_key_flags(common_flags)  # --data_dir in --help

MODEL = flags.DEFINE_string(
    "model", None, "A training WORKDIR, a ckpt-N prefix, or a SavedModel of alexnet_tf.export."
)
OUTPUT = flags.DEFINE_string("output", None, "FILE.csv or FILE.jsonl: one row per image.")
TOP_K = flags.DEFINE_integer("top_k", 5, "Guesses per image.")
TEN_PATCH = flags.DEFINE_bool(
    "ten_patch", False, "Average the ten patches of section 4.1 instead of the centre patch."
)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass (×10 with ten).")
QUIET = flags.DEFINE_bool("quiet", False, "Print no line per image (only the progress bar).")


def _print(prediction: predictions.Prediction) -> None:
    if prediction.error:
        line = f"{prediction.image}: skipped: {prediction.error}"
    else:
        guesses = []
        for i, guess in enumerate(prediction.top_k):
            box = ""
            if prediction.boxes:
                b = prediction.boxes[i]
                box = f" box (x {b['xmin']:.0f}-{b['xmax']:.0f}, y {b['ymin']:.0f}-{b['ymax']:.0f})"
            text = f" {guess['text']}" if guess["text"] != guess["class"] else ""
            guesses.append(f"{guess['probability']:.3f} {guess['class']}{text}{box}")
        line = f"{prediction.image}: " + "; ".join(guesses)
    tqdm.tqdm.write(line, file=sys.stdout)


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not MODEL.value:
        raise app.UsageError("pass --model (a training WORKDIR, ckpt-N or SavedModel)")
    if not paths:
        raise app.UsageError("name the image files or folders to label after the flags")
    for flag in (TOP_K, BATCH_SIZE):
        if flag.value < 1:
            raise app.UsageError(f"--{flag.name} must be >= 1; received {flag.value}")
    with tool_errors.reported("predict"):
        predictions.check_output(OUTPUT.value)  # before the model loads
        source = predictions.load_model(MODEL.value, common_flags.DATA_DIR.value)
        result = predictions.predict(
            source,
            paths,
            output=OUTPUT.value,
            top_k=TOP_K.value,
            ten_patch=TEN_PATCH.value,
            batch_size=BATCH_SIZE.value,
            on_prediction=None if QUIET.value else _print,
        )
    for problem in result.problems:
        print(f"predict: {problem}", file=sys.stderr)
    written = f"; wrote {result.output}" if result.output else ""
    print(
        f"predict: {result.num_images} files, {result.num_skipped} skipped{written}",
        file=sys.stderr,
    )


def run_main() -> None:
    common_flags.run(main, "predict")


if __name__ == "__main__":
    run_main()
