"""The `manifest.json` that the converter writes beside its shards, and that every binary reads.

It is the one contract between `tools/build_imagenet_tfrecords.py` and the rest of the package:
the label map (so the number of classes comes from the data), the shards of each split with their
record counts and SHA-256, the label offset, and the data statistics of section 4.1 (the mean image
that is subtracted, and the RGB covariance whose eigenvectors drive the PCA colour noise).

Layout (format 1):

    {
      "format": 1,
      "label_offset": 0,                      # stored label = class index + label_offset
      "classes": [{"synset": "n01440764", "text": "tench, Tinca tinca"}, ...],  # index = label
      "splits": {
        "train": {"num_examples": N, "shards": [{"file": "train-00000-of-01024",
                                                 "num_records": n, "sha256": "..."}, ...]},
        "validation": {...}
      },
      "statistics": {                          # over the training split, 0-255 scale, RGB
        "mean_image": "mean_image.npy",        # 256×256×3 float32, beside the manifest
        "channel_mean": [r, g, b],
        "rgb_covariance": [[...], [...], [...]],
        "eigenvalues": [l1, l2, l3],           # descending
        "eigenvectors": [[...], [...], [...]], # column i is the eigenvector of eigenvalue i
        "num_images": N
      },
      "options": {...}, "skipped": [{"file": ..., "reason": ...}], "repaired": [...]
    }
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from alexnet_tf.files import atomic

MANIFEST_NAME = "manifest.json"
FORMAT = 1
SPLITS = ("train", "validation")


class ManifestError(ValueError):
    """The manifest is missing or does not hold what is needed; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Split:
    num_examples: int
    files: list[str]  # absolute paths of the shards
    num_records: list[int]
    sha256: list[str]


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: str
    label_offset: int
    synsets: list[str]
    texts: list[str]
    splits: dict[str, Split]
    statistics: dict
    raw: dict

    @property
    def num_classes(self) -> int:
        return len(self.synsets)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise ManifestError(
                f"{self.path} has no '{name}' split (it has {sorted(self.splits)}); "
                f"convert that split with tools/build_imagenet_tfrecords.py"
            )
        return self.splits[name]

    def mean_image(self) -> np.ndarray | None:
        """The 256×256×3 float32 mean of the training images (0-255), or None if not recorded."""
        name = self.statistics.get("mean_image")
        if not name:
            return None
        path = os.path.join(os.path.dirname(self.path), name)
        try:
            return np.load(path).astype(np.float32)
        except (OSError, ValueError) as e:
            raise ManifestError(
                f"{self.path} names mean image {path}, which can't be read: {e}"
            ) from e

    def channel_mean(self) -> np.ndarray | None:
        value = self.statistics.get("channel_mean")
        return None if value is None else np.asarray(value, np.float32)

    def eigen(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(eigenvalues (3,), eigenvectors (3, 3) with one eigenvector per column), or None."""
        if "eigenvalues" not in self.statistics or "eigenvectors" not in self.statistics:
            return None
        return (
            np.asarray(self.statistics["eigenvalues"], np.float32),
            np.asarray(self.statistics["eigenvectors"], np.float32),
        )


def manifest_path(data_dir: str) -> str:
    return os.path.join(data_dir, MANIFEST_NAME)


def load_manifest(data_dir: str) -> Manifest:
    """Reads `data_dir/manifest.json`; raises ManifestError naming the file on any problem."""
    path = manifest_path(data_dir)
    if not os.path.isdir(data_dir):
        raise ManifestError(f"data directory {data_dir!r} does not exist")
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ManifestError(
            f"{path} not found: --data_dir must hold shards written by "
            f"tools/build_imagenet_tfrecords.py"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} can't be read as JSON: {e}") from e
    if raw.get("format") != FORMAT:
        raise ManifestError(f"{path} has format {raw.get('format')!r}; expected {FORMAT}")
    try:
        classes = raw["classes"]
        splits = {
            name: Split(
                num_examples=int(s["num_examples"]),
                files=[os.path.join(data_dir, shard["file"]) for shard in s["shards"]],
                num_records=[int(shard["num_records"]) for shard in s["shards"]],
                sha256=[shard.get("sha256", "") for shard in s["shards"]],
            )
            for name, s in raw.get("splits", {}).items()
        }
        return Manifest(
            path=path,
            label_offset=int(raw.get("label_offset", 0)),
            synsets=[c["synset"] for c in classes],
            texts=[c.get("text", c["synset"]) for c in classes],
            splits=splits,
            statistics=raw.get("statistics", {}),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{path} is missing or has a malformed field: {e!r}") from e


def write_manifest(data_dir: str, manifest: dict) -> str:
    """Writes `manifest` atomically (temporary file, then rename); returns its path."""
    return atomic.write_json(manifest_path(data_dir), {"format": FORMAT, **manifest})
