r"""ILSVRC-2012 to TFRecord shards: `convert` writes them, `verify` re-reads them.

    python tools/build_imagenet_tfrecords.py --train_dir=... --val_dir=... --val_labels=... \
        --output_dir=...
"""

from alexnet_tf.convert.converter import ConvertResult, convert
from alexnet_tf.convert.sources import ConvertError

__all__ = ["ConvertError", "ConvertResult", "convert"]
