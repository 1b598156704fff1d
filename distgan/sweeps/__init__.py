"""Hyperparameter sweeps without Ray: search spaces, the scheduler and searcher registries, and the
checks of a sweep's ``tune`` section. ``distgan.launch.tune`` runs them on Ray Tune."""
