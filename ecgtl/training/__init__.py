"""Training engine: the loop, fine-tuning schedules (gradual unfreezing), discriminative lrs, checkpoints."""
