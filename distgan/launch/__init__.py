"""The Ray side: local or remote cluster, TorchTrainer, the per-worker entry point."""
