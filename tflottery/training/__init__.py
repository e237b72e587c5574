"""Training: the strategy, optimizers, LR schedules, and the one training loop."""
