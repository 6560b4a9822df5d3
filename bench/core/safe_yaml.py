"""YAML read with bounds: ``load_yaml_text(text, where)`` is ``yaml.safe_load`` that also refuses

- a mapping that gives one key twice (YAML keeps the last silently; here it is an error naming key and line),
- more than :data:`MAX_ALIASES` alias uses, an alias inside its own anchor (a cycle), and documents whose
  aliases would expand to more than :data:`MAX_NODES` values (an "alias bomb" fails within a few hundred
  events, before anything large is built),
- nesting deeper than :data:`MAX_DEPTH` levels (aliases counted as expanded),
- input larger than :data:`MAX_BYTES`,

each as one :class:`YamlError` line (a ValueError), never a traceback. Merge keys (``<<: *base``) keep their
meaning: a key given next to a merge overrides the merged one, which is not a duplicate.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.reader import ReaderError

MAX_BYTES = 1 << 20  # 1 MiB of text
MAX_ALIASES = 100  # alias uses (*name) in one document
MAX_DEPTH = 50  # nested collections, aliases expanded
MAX_NODES = 100_000  # values in the document with every alias expanded

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """Unreadable or refused YAML; the message is one line naming the place and what is allowed."""


def _line(node_or_mark: Any) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return int(getattr(mark, "line", -1)) + 1


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts aliases, depth and expanded size, and whose constructor refuses
    duplicate keys."""

    def __init__(self, text: str, where: str) -> None:
        super().__init__(text)
        self.where = where
        self._depth = 0
        self._aliases = 0
        self._open: set[str] = set()  # anchors whose collection is still being composed
        self._measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded height, expanded values)
        self._keys: dict[int, list[Node]] = {}  # id(mapping node) -> its own key nodes, as written (merges apart)

    def _fail(self, what: str, line: int, allowed: str) -> YamlError:
        return YamlError(f"{self.where}: line {line}: {what}; allowed: {allowed}")

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._fail(
                    f"more than {MAX_ALIASES} aliases (*{event.anchor})",
                    _line(event),
                    f"at most {MAX_ALIASES} alias uses in one document",
                )
            if event.anchor in self._open:
                raise self._fail(
                    f"alias *{event.anchor} inside its own anchor (a cycle)",
                    _line(event),
                    "aliases to anchors defined before them",
                )
            node = super().compose_node(parent, index)
            height, size = self._measure.get(id(node), (1, 1))
            self._check(height + self._depth, size, event)
            return node
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._fail(f"nesting deeper than {MAX_DEPTH} levels", _line(event), f"at most {MAX_DEPTH} levels")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if isinstance(node, ScalarNode):
            height, size = 1, 1
        else:
            children = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else node.value
            measures = [self._measure.get(id(child), (1, 1)) for child in children]
            height = 1 + max((h for h, _ in measures), default=0)
            size = 1 + sum(s for _, s in measures)
        self._measure[id(node)] = (height, size)
        self._check(height + self._depth, size, event)
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        # merges (``<<``) rewrite node.value in place while constructing; the keys as written are kept here
        self._keys[id(node)] = [key for key, _ in node.value if key.tag != _MERGE_TAG]
        return node

    def _check(self, depth: int, size: int, event: Any) -> None:
        if depth > MAX_DEPTH:
            raise self._fail(
                f"nesting deeper than {MAX_DEPTH} levels (aliases expanded)",
                _line(event),
                f"at most {MAX_DEPTH} levels",
            )
        if size > MAX_NODES:
            raise self._fail(
                f"aliases expanding to more than {MAX_NODES} values",
                _line(event),
                f"a document of at most {MAX_NODES} values with aliases expanded",
            )

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node in self._keys.get(id(node), []):
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    raise self._fail(
                        f"a mapping key that is a {type(key).__name__}",
                        _line(key_node),
                        "keys that are strings, numbers, true/false or null",
                    ) from None
                if first is not None:
                    raise self._fail(
                        f"duplicate key {_short(key)} (first at line {first})",
                        _line(key_node),
                        "each key once per mapping",
                    )
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)

    # Numbers and booleans as YAML 1.2 reads them: YAML 1.1 (PyYAML's default) reads 010 as 8, 1:30 as 90,
    # 0x10 as 16, 1_0 as 10 and yes/no/on/off as booleans, which a matrix author almost never means.
    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(node.value)
        if not _DECIMAL.fullmatch(text):
            raise self._fail(
                f"{text!r} is a number only in octal, hexadecimal, sexagesimal or underscore notation",
                _line(node),
                "a decimal integer without leading zeros (e.g. 10), or quote it for a string",
            )
        return int(text)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = str(node.value)
        if "_" in text or ":" in text:
            raise self._fail(
                f"{text!r} is a number only in YAML 1.1's underscore or sexagesimal notation",
                _line(node),
                "a plain decimal number such as 0.01 or 1.0e-2",
            )
        return float(super().construct_yaml_float(node))


_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_BOOL_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BoundedLoader.yaml_implicit_resolvers = {  # YAML 1.2 has no implicit dates: 2024-05-01 is a string
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BoundedLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# 1e-2 and 1E5 are floats in YAML 1.2 (1.1 needs a dot and reads them as strings)
_BoundedLoader.add_implicit_resolver(
    _FLOAT_TAG, re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)
# YAML 1.2's own octal (0o17) is refused with the other notations rather than read as a string
_BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?0o[0-7]+$"), list("-+0"))
_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor(_FLOAT_TAG, _BoundedLoader.construct_yaml_float)


def _yaml_problem(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        problem = " ".join(str(err.problem or err.context or type(err).__name__).split())
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem
    if isinstance(err, ReaderError):
        return f"{' '.join(str(err.reason).split())} at character {err.position + 1}"
    lines = str(err).splitlines()
    return " ".join(lines[0].split()) if lines else type(err).__name__


def load_yaml_text(text: str, where: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, within the bounds above; ``where`` (a path) starts every
    error message. Refusals and unreadable YAML raise :class:`YamlError` with one line."""
    if not isinstance(text, str):
        raise YamlError(f"{where}: YAML must be given as text, got {type(text).__name__}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise YamlError(f"{where}: {size} bytes of YAML; allowed: at most {MAX_BYTES} bytes")
    loader = None
    try:
        loader = _BoundedLoader(text, where)
        return loader.get_single_data()
    except YamlError:
        raise
    except yaml.YAMLError as err:
        raise YamlError(f"{where}: not valid YAML ({_yaml_problem(err)})") from None
    except RecursionError:
        raise YamlError(f"{where}: nesting too deep; allowed: at most {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError, TypeError) as err:  # e.g. an integer of 5000 digits, a date like 2024-13-45
        detail = " ".join(str(err).split(";")[0].split())[:120] or type(err).__name__
        raise YamlError(
            f"{where}: a value YAML cannot read ({detail}); allowed: plain numbers, strings, "
            "true/false, null, lists and mappings"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
