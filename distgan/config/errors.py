"""The one error a config can raise, and the range checks every section uses."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value, key or file is wrong; the message names it."""


def positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


MAX_SEED = 2**32 - 1
"""Seeds feed torch and numpy generators (``np.random.seed`` and Ray Tune's searchers take 32 bits), and are
combined with steps and ranks: a 32-bit seed fits every one of them."""


def check_seed(key: str, value) -> None:
    """A seed is None (where the key allows it: derived from another) or an integer in [0, 2^32)."""
    if value is not None and not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key}: a seed must be in [0, 2^32 - 1], got {value!r}")
