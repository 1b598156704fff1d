"""Name -> constructor registries, keyed by the ``type:``/``family:`` strings of the config."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Optional, TypeVar

from distgan.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small registry; ``get`` raises a ConfigError naming the key and the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str, key: Optional[str] = None) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self._entries))}{hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
