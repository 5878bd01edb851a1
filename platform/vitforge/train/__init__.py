"""Training: the per-worker loop, the DeepSpeed engine and checkpoints, stages, export."""
