"""One typed registry for every named plugin: datasets, networks, methods, evaluation protocols, table layouts.

Each registry refuses a second registration of a name and answers an unknown name with one message,
``unknown <kind> 'x'; allowed: a, b, c``, raised as the registry's own error type (so callers can catch
``UnknownDatasetError`` and the like). It imports nothing: plugins import it, never the other way round.
An entry may also be registered lazily as a ``"module:attribute"`` string (:meth:`Registry.add_lazy`), imported
on first use, so a registry can name its built-ins without importing them (no import cycle is possible).
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name no registry entry has; the message lists the allowed names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Names -> entries, in registration order. ``canonical`` maps spellings to one key ('CIFAR-10' -> 'cifar10')."""

    def __init__(
        self, kind: str, error: Callable[[str], Exception] = UnknownNameError, canonical: Callable[[str], str] = str
    ) -> None:
        self.kind, self._error, self._canonical = kind, error, canonical
        self._entries: dict[str, T] = {}
        self._lazy: set[str] = set()  # keys whose entry is still a "module:attribute" string

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name already taken raises ValueError."""
        key = self._canonical(name)
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = entry
        return entry

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attribute"`` under ``name``; it is imported the first time ``name`` is looked up."""
        self.add(name, target)  # type: ignore[arg-type]
        self._lazy.add(self._canonical(name))

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry for ``name``; unknown names raise the registry's error listing the allowed ones."""
        key = self._canonical(name)
        if key not in self._entries:
            raise self._error(self.unknown_message(name))
        if key in self._lazy:
            module, _, attribute = str(self._entries[key]).partition(":")
            self._entries[key] = getattr(importlib.import_module(module), attribute)
            self._lazy.discard(key)
        return self._entries[key]

    def unknown_message(self, name: object, extra: str = "") -> str:
        hint = suggestion(str(name), self.names())
        return f"unknown {self.kind} {name!r}{hint}; allowed: {', '.join(self.names())}{extra}"

    def key(self, name: str) -> str:
        """The canonical spelling of ``name`` (checked: unknown names raise)."""
        self.get(name)
        return self._canonical(name)

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter([(name, self.get(name)) for name in self.names()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._canonical(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def suggestion(name: str, choices: list[str]) -> str:
    """' (did you mean 'X'?)' for the closest of ``choices`` to a mistyped ``name``, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6) or difflib.get_close_matches(
        name.lower(), [c.lower() for c in choices], n=1, cutoff=0.6
    )
    if not close:
        return ""
    match = next((c for c in choices if c.lower() == close[0].lower()), close[0])
    return f" (did you mean {match!r}?)"
