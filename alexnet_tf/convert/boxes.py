"""The box fields of one record: checked ground truth, in the stored and the original frame.

ILSVRC-2012 task 2 scores a guessed box against the image's ground-truth boxes in the original
image. The stored image is the central square (`--resize=256`), so a record keeps both:

* `bboxes`: fractions of the stored image, clipped to it; a box wholly cut away by the central
  crop has none (the training target is what the network can see);
* `original_bboxes`: the whole boxes in original pixels, never clipped (what guesses are scored
  against), with `original_size` and `original_crop`, the part of the original the stored image
  shows, so any box can be mapped back (`alexnet_tf.data.boxes`).

No TensorFlow here: this runs in the converter's worker processes.
"""

from __future__ import annotations

from alexnet_tf.convert import sources
from alexnet_tf.data import records


def record_boxes(task, item, image, result) -> dict:
    """The keyword arguments of `records.to_example` that describe boxes and geometry.

    Reads and checks `item.bbox_xml` (if any) for the class of `item`; each skipped box goes to
    `result.bad_boxes` naming the XML, the image and the reason, and `result.boxes` counts the
    images with boxes and the boxes kept.

    Args:
        task: the shard's `shards.ShardTask` (class names, resize).
        item: the `sources.Item` being converted.
        image: its `images.Processed`.
        result: the shard's `shards.ShardResult`, updated in place.
    """
    height, width = image.original_size
    left, top, side_x, side_y = image.crop
    crop = (top * height, left * width, (top + side_y) * height, (left + side_x) * width)
    fractions = []
    if item.bbox_xml:
        fractions, problems = sources.read_bboxes(item.bbox_xml, task.synsets[item.label])
        result.bad_boxes += [{**p, "image": item.name} for p in problems]
    if fractions:
        result.boxes["images"] += 1
        result.boxes["kept"] += len(fractions)
    stored = records.crop_bboxes(fractions, image.crop) if task.resize else list(fractions)
    return {
        "bboxes": stored,
        "original_size": (height, width),
        "original_crop": crop,
        "original_bboxes": [
            (ymin * height, xmin * width, ymax * height, xmax * width)
            for xmin, ymin, xmax, ymax in fractions
        ],
    }
