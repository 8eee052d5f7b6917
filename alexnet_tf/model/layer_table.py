"""The layer table of the 2012 network (section 3): kernels, output maps, neurons, parameters.

`python -m alexnet_tf.describe` prints it; tests read it to pin the paper's sizes.
"""

from __future__ import annotations

import keras

from alexnet_tf.model.box_head import BOX_LAYER, has_box_head
from alexnet_tf.model.network import PAPER_LAYERS, TOWERS
from alexnet_tf.model.paper_weights import get_paper_weights


def layer_table(model: keras.Model) -> list[dict]:
    """One row per paper layer (both towers together): kernel, output map, neurons, parameters."""
    weights = get_paper_weights(model)
    rows = []
    for name in PAPER_LAYERS:
        kernel, bias = weights[name]
        if name == "fc8":
            shape = tuple(model.get_layer("fc8").output.shape[1:])
        else:
            shapes = [model.get_layer(f"{name}_{t}").output.shape[1:] for t in TOWERS]
            shape = tuple(shapes[0][:-1]) + (sum(s[-1] for s in shapes),)
        neurons = 1
        for d in shape:
            neurons *= d
        rows.append(
            {
                "layer": name,
                "kernel": tuple(kernel.shape),
                "output": shape,
                "neurons": neurons,
                "parameters": kernel.size + bias.size,
            }
        )
    if has_box_head(model):
        head = model.get_layer(BOX_LAYER)
        units = head.kernel.shape[0] * head.kernel.shape[-1]
        rows.append(
            {
                "layer": BOX_LAYER,
                "kernel": tuple(head.kernel.shape),
                "output": (units,),
                "neurons": units,
                "parameters": head.count_params(),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'layer':<6} {'kernel (HWIO)':<20} {'output':<15} {'neurons':>10} {'parameters':>12}"
    ]
    for r in rows:
        lines.append(
            f"{r['layer']:<6} {'×'.join(map(str, r['kernel'])):<20} "
            f"{'×'.join(map(str, r['output'])):<15} {r['neurons']:>10,} {r['parameters']:>12,}"
        )
    total = sum(r["parameters"] for r in rows)
    lines.append(
        f"{'total':<6} {'':<20} {'':<15} {sum(r['neurons'] for r in rows):>10,} {total:>12,}"
    )
    return "\n".join(lines)
