"""A training run on disk, read back: its model config and checkpoints.

Below Training (which resumes from them) and Results (which restores the network from them).
"""
