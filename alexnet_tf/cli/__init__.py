"""What the commands (`python -m alexnet_tf.X`) share: flags, one-line errors, CPU settings."""
