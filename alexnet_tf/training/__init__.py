"""Training (section 5): the loop, update rule, schedules, strategies, checkpoints."""
