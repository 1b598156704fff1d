"""Loading a config: a YAML file (or the defaults) plus ``KEY=VALUE`` overrides, and the paths it names."""

from __future__ import annotations

import dataclasses
import types
import typing
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


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, again: int):
        super().__init__(key, first, again)
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently: a
    second ``train:`` block would drop the first without a word). A merge (``<<: *anchor``) still gives
    defaults that the mapping's own keys override."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: the constructor below names it
                    continue
        return super().construct_mapping(node, deep)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)


def read_yaml(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = _load(path.read_text())
    except _DuplicateKey as dup:
        raise ConfigError(f"config file {str(path)!r}: key {dup.key!r} is given twice in one mapping (lines "
                          f"{dup.first} and {dup.again}); YAML would keep only the second, so give it once") from None
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
        value = _load(text) if text.strip() else ""
    except _DuplicateKey as dup:
        raise ConfigError(f"override {item!r}: key {dup.key!r} is given twice") from None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for the key ``a.b.c``, as the config's sections nest.

    A mapping given for a section merges into what the section holds (``model.stylegan2={mapping_layers: 4}``
    keeps the file's other ``model.stylegan2`` keys, as ``model.stylegan2.mapping_layers=4`` would); any other
    value replaces. Past a key whose value is itself a mapping of names (``tune.space``), the rest of the
    key is one name in it: ``tune.space.optim.g.lr`` is the space's ``optim.g.lr``.
    """
    parts, section = _path(key)
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    old = node.get(parts[-1])
    node[parts[-1]] = _merged(old, value, section) if section and isinstance(old, dict) else value


def _path(key: str) -> tuple[list[str], Optional[type]]:
    """``key``'s parts as the schema nests them, and the section (dataclass) it names, if it names one."""
    parts = key.split(".")
    cls: Optional[type] = Config
    for i, part in enumerate(parts):
        tp = _field_type(cls, part) if cls is not None else None
        if tp is None:  # not a key of the schema: left as written, for build_section to name
            return parts, None
        if dataclasses.is_dataclass(tp):
            cls = tp
            continue
        if typing.get_origin(tp) is dict and i + 1 < len(parts):
            return parts[:i + 1] + [".".join(parts[i + 1:])], None
        return parts, None
    return parts, cls


def _field_type(cls: type, name: str) -> Optional[type]:
    """The annotation of field ``name`` of ``cls`` (Optional[X] read as X), None when it has no such field."""
    if name not in {f.name for f in dataclasses.fields(cls)}:
        return None
    tp = typing.get_type_hints(cls)[name]
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = options[0] if len(options) == 1 else tp
    return tp


def _merged(old: dict, new: Any, section: type) -> Any:
    """``new`` over ``old`` for the dataclass ``section``: nested sections merge too, other keys replace."""
    if not isinstance(new, dict):
        return new
    out = dict(old)
    for name, value in new.items():
        inner = _field_type(section, name) if isinstance(name, str) else None
        if inner is not None and dataclasses.is_dataclass(inner) and isinstance(out.get(name), dict):
            out[name] = _merged(out[name], value, inner)
        else:
            out[name] = value
    return out
