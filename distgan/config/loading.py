"""Loading a config: a YAML file (or the defaults) plus ``KEY=VALUE`` overrides, and the paths it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import yaml

from distgan.config.errors import ConfigError
from distgan.config.schema import PATH_KEYS
from distgan.config.schema import Config

def load_config(path: Optional[Union[str, Path]] = None, overrides: tuple[str, ...] = ()) -> Config:
    """YAML file (or the built-in defaults) + ``KEY=VALUE`` overrides -> Config (keys, types and ranges
    checked; ``distgan.checks.validate`` resolves the registry names)."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    return Config.from_dict(raw)


def with_absolute_paths(cfg: Config) -> Config:
    """``cfg`` with every relative path of ``PATH_KEYS`` made absolute against this process's directory.

    Called by the launchers before a config leaves the driver: Ray workers run in
    their own working directory, where a relative path names nothing (or the
    wrong thing), and the run's ``config.yaml`` then records what was used.
    """
    raw = cfg.to_dict()
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        if node[name] is not None and "://" not in node[name]:
            node[name] = str(Path(node[name]).expanduser().absolute())
    return Config.from_dict(raw) if raw != cfg.to_dict() else cfg


def read_yaml(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, got {type(raw).__name__}")
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=VALUE`` -> ("a.b", parsed VALUE). VALUE is read as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form KEY=VALUE (for example train.steps=200)")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value
