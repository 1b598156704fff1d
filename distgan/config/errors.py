"""The one error a config can raise, and the range check every section uses."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value, key or file is wrong; the message names it."""


def positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
