"""The same network in PyTorch, timed on the CPU in float32 and under PyTorch's bfloat16 autocast.

The comparison that `benchmarks/model_speed.py --torch_python=PYTHON` makes in one run: this
file runs under a Python that has PyTorch (not a dependency of the project: install it in a
separate virtualenv, e.g. `python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch
numpy`), as a worker that model_speed.py starts once and asks for one timing at a time, so that
its repetitions interleave with TensorFlow's and the same load hits both.

The network is the 2012 one on one device, the towers as grouped convolutions (conv2, conv4 and
conv5 see only their own tower's maps, `groups=2`), the paper's LRN (PyTorch divides alpha by
the size, so alpha is given as 5 × 1e-4), dropout 0.5, 60,965,224 parameters; the training step
is the paper's: cross-entropy, SGD with momentum 0.9 and weight decay 0.0005 on the weights.

Protocol (one JSON object per line): model_speed.py writes
`{"images": "batch.npy", "photos": "photos.npy"}` first (NHWC float32 arrays: 227×227 crops,
and 256×256 photographs for the ten patches), then `{"measure": "train" | "infer" | "ten_patch",
"precision": "float32" | "bfloat16", "steps": N}`; each request is answered with
`{"wall": seconds per call, "cpu": process CPU seconds per call}`. The first call of each pair
is the warm-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

PARAMETERS = 60_965_224
PATCHES = 10
SIZE = 227


def build(num_classes: int = 1000):
    import torch
    from torch import nn

    def conv(cin, cout, k, stride=1, pad=0, groups=1):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups)

    def lrn():
        return nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)

    model = nn.Sequential(
        conv(3, 96, 11, stride=4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        conv(96, 256, 5, pad=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        conv(256, 384, 3, pad=1), nn.ReLU(),
        conv(384, 384, 3, pad=1, groups=2), nn.ReLU(),
        conv(384, 256, 3, pad=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, num_classes),
    )  # fmt: skip
    count = sum(p.numel() for p in model.parameters())
    if num_classes == 1000 and count != PARAMETERS:
        raise AssertionError(f"{count} parameters, the paper's network has {PARAMETERS}")
    torch.manual_seed(0)
    return model


def make_functions(images: np.ndarray, photos: np.ndarray) -> dict:
    """{(measure, precision): (function of no arguments, images per call)}."""
    import torch

    model = build()
    decayed = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    sgd = torch.optim.SGD(
        [{"params": decayed, "weight_decay": 5e-4}, {"params": biases, "weight_decay": 0.0}],
        lr=0.01,
        momentum=0.9,
    )
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    labels = torch.arange(batch.shape[0]) % 1000
    full = torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous()
    far, mid = full.shape[-1] - SIZE, (full.shape[-1] - SIZE) // 2
    offsets = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    five = torch.stack([full[..., y : y + SIZE, x : x + SIZE] for y, x in offsets], dim=1)
    patches = torch.cat([five, five.flip(-1)], dim=1).reshape(-1, 3, SIZE, SIZE)

    def autocast(precision):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")

    def train(precision):
        model.train()
        with autocast(precision):
            loss = torch.nn.functional.cross_entropy(model(batch), labels)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()
        return float(loss)

    def infer(precision):
        model.eval()
        with torch.no_grad(), autocast(precision):
            return model(batch).softmax(-1).float().sum().item()

    def ten_patch(precision):
        model.eval()
        with torch.no_grad(), autocast(precision):
            probs = model(patches).float().softmax(-1)
        return probs.reshape(-1, PATCHES, probs.shape[-1]).mean(1).sum().item()

    functions = {}
    for precision in ("float32", "bfloat16"):
        functions["train", precision] = (lambda p=precision: train(p)), batch.shape[0]
        functions["infer", precision] = (lambda p=precision: infer(p)), batch.shape[0]
        functions["ten_patch", precision] = (lambda p=precision: ten_patch(p)), full.shape[0]
    return functions


def serve(lines, write) -> None:
    """Answers model_speed.py's requests (see the module docstring) until its input ends."""
    import torch

    first = json.loads(next(lines))
    functions = make_functions(np.load(first["images"]), np.load(first["photos"]))
    write({"torch": torch.__version__, "threads": torch.get_num_threads()})
    for line in lines:
        request = json.loads(line)
        fn, _ = functions[request["measure"], request["precision"]]
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(request.get("steps", 1)):
            fn()
        steps = request.get("steps", 1)
        write({
            "wall": (time.perf_counter() - start) / steps,
            "cpu": (time.process_time() - cpu) / steps,
        })  # fmt: skip


class Worker:
    """model_speed.py's side: starts this file under `python` and asks it for timings."""

    def __init__(self, python: str, images: np.ndarray, photos: np.ndarray, folder: str):
        paths = {name: os.path.join(folder, f"torch_{name}.npy") for name in ("images", "photos")}
        np.save(paths["images"], images)
        np.save(paths["photos"], photos)
        self._process = subprocess.Popen(
            [python, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._ask(paths)
        self.images = {"train": len(images), "infer": len(images), "ten_patch": len(photos)}

    def _ask(self, request: dict) -> dict:
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker stopped (exit {self._process.wait()})")
        return json.loads(line)

    def time(self, measure: str, precision: str, steps: int = 1) -> tuple[float, float]:
        """Wall-clock and CPU seconds per call, as model_speed.py's own `_time`."""
        answer = self._ask({"measure": measure, "precision": precision, "steps": steps})
        return answer["wall"], answer["cpu"]

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait()


def main() -> None:
    def write(obj):
        print(json.dumps(obj), flush=True)

    serve(iter(sys.stdin.readline, ""), write)


if __name__ == "__main__":
    main()
