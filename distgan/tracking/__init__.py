"""Where metrics and images go: metrics.jsonl, W&B, sample images, the driver's console."""
