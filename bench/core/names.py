"""The grammar of method names, shared by the methods (which parse them) and the reports (which order rows).

    name   := base ("+" switch)*        switch := [a-z][a-z0-9_]*

A base is a registered method name; it may contain "+" (DREAM+), but never "+" followed by a lowercase
letter, so the split needs no registry: ``IDC+rm+init`` -> (IDC, [rm, init]); ``DREAM+`` -> (DREAM+, []);
``DREAM++bm`` -> (DREAM+, [bm]); ``DREAM+bm`` -> (DREAM, [bm]).
"""

from __future__ import annotations

import re

NAME = re.compile(r"(?P<base>.+?)(?P<switches>(?:\+[a-z][a-z0-9_]*)*)")
FORBIDDEN_IN_BASE = re.compile(r"\+[a-z]")


def split_method_name(name: str) -> tuple[str, list[str]]:
    """(base, switches) of a method name by the grammar above."""
    match = NAME.fullmatch(name)
    if match is None:  # only the empty name
        return name, []
    switches = match.group("switches")
    return match.group("base"), switches[1:].split("+") if switches else []


def check_base_name(name: str) -> str:
    """A base name the grammar can tell apart from its switches (ValueError otherwise)."""
    if not name or FORBIDDEN_IN_BASE.search(name):
        raise ValueError(
            f"method name {name!r} is not allowed as a base: it may not contain '+' followed by a "
            "lowercase letter (that starts a switch, e.g. IDC+rm)"
        )
    return name
