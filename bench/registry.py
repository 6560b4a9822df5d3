"""One typed registry for every named plugin: datasets, networks, methods, evaluation protocols, table layouts.

Each registry refuses a second registration of a name and answers an unknown name with one message,
``unknown <kind> 'x'; allowed: a, b, c``, raised as the registry's own error type (so callers can catch
``UnknownDatasetError`` and the like). It imports nothing: plugins import it, never the other way round.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name no registry entry has; the message lists the allowed names."""

    def __str__(self) -> str:   # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Names -> entries, in registration order. ``canonical`` maps spellings to one key ('CIFAR-10' -> 'cifar10')."""

    def __init__(self, kind: str, error: Callable[[str], Exception] = UnknownNameError,
                 canonical: Callable[[str], str] = str) -> None:
        self.kind, self._error, self._canonical = kind, error, canonical
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name already taken raises ValueError."""
        key = self._canonical(name)
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry for ``name``; unknown names raise the registry's error listing the allowed ones."""
        key = self._canonical(name)
        if key not in self._entries:
            raise self._error(self.unknown_message(name))
        return self._entries[key]

    def unknown_message(self, name: object, extra: str = "") -> str:
        return f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}{extra}"

    def key(self, name: str) -> str:
        """The canonical spelling of ``name`` (checked: unknown names raise)."""
        self.get(name)
        return self._canonical(name)

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._canonical(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
