"""Figure 1 of the paper drawn from the experiment's result: training error rate against epochs.

As in the paper: ReLU solid, tanh dashed, a horizontal line at the threshold (25%), the epochs
on the x axis and the training error rate on the y axis. A unit that never reached the threshold
says so in the legend, and its curve ends in a mark at the last epoch it ran.

    write_figure(result, "out/relu_vs_tanh.png")     # result: relu_vs_tanh.run_experiment's dict
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

from alexnet_tf.files import atomic  # noqa: E402

JSON_NAME, FIGURE_NAME = "relu_vs_tanh.json", "relu_vs_tanh.png"
STYLES = {"relu": ("-", "tab:blue", "ReLU"), "tanh": ("--", "tab:red", "tanh")}


def legend_label(unit: str, curve: dict) -> str:
    """`ReLU (lr 0.002): 25% at epoch 5.5`, or `... never reached 25% in 30 epochs`."""
    _, _, name = STYLES[unit]
    reached = curve["epochs_to_threshold"]
    head = f"{name} (lr {curve['learning_rate']:g})"
    if reached is not None:
        return f"{head}: threshold at epoch {reached:.1f}"
    ran = curve["epochs"][-1] if curve["epochs"] else 0.0
    return f"{head}: never reached the threshold in {ran:.1f} epochs"


def write_figure(result: dict, path: str) -> str:
    """Draws `result` (the experiment's dict) as figure 1 into the PNG at `path` (atomically)."""
    threshold = result["threshold"]
    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for unit, curve in result["units"].items():
        style, colour, _ = STYLES[unit]
        axes.plot(
            curve["epochs"], curve["train_error"], style, color=colour, linewidth=1.8,
            label=legend_label(unit, curve),
        )  # fmt: skip
        if curve["epochs_to_threshold"] is None and curve["epochs"]:
            axes.plot(curve["epochs"][-1], curve["train_error"][-1], "x", color=colour, ms=9)
    axes.axhline(
        threshold, color="0.4", linewidth=1.0, linestyle=":", label=f"threshold {threshold:.0%}"
    )
    axes.set_xlabel("Epochs")
    axes.set_ylabel("Training error rate")
    axes.set_ylim(0, 1)
    axes.set_xlim(left=0)
    title = "ReLU against tanh"
    if result.get("speedup") is not None:
        bound = "≥ " if result.get("speedup_is_lower_bound") else ""
        title += f": ReLU reaches {threshold:.0%} {bound}{result['speedup']:.1f}× sooner"
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    try:
        with atomic.temporary_path(path, ".png") as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
    return path


def write_result(result: dict, output_dir: str) -> tuple[str, str]:
    """Writes `relu_vs_tanh.json` and `relu_vs_tanh.png` into `output_dir`; returns their paths."""
    json_path = atomic.write_json(os.path.join(output_dir, JSON_NAME), result)
    return json_path, write_figure(result, os.path.join(output_dir, FIGURE_NAME))
