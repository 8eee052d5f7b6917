"""What the commands (`python -m alexnet_tf.X`) share: a quiet start, flags, one-line errors,
CPU settings."""
