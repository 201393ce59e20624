"""Reading untrusted YAML safely: bytes in, plain data and the position of every field out.

Owns the defences that run before any schema sees the file: a size cap
checked before parsing, refusal of binary and non-UTF-8 input, of empty
files, of anchors and aliases (so an alias bomb fails at its first anchor), of
nesting deeper than any real spec, of custom tags, of duplicate keys and of
keys that are not strings. Only the standard YAML scalars are built (strings,
numbers, booleans, null; a timestamp stays the text it was written as). Each
value's line and column are kept, keyed by its field path, so every later
error can say where it is.

Must not: know the schema or the spec's meaning; that is `schema.py` and `spec.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.api.issues import Issue, format_path
from reconciler.core.model import FieldPath

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Position:
    """Where a value sits (1-based) and where the key naming it sits.

    For list items and the root the key position is the value's. `plain` is
    the text of an unquoted scalar, so a message can explain what YAML made
    of it (12:30 is a number in YAML 1.1).
    """

    line: int
    col: int
    key_line: int
    key_col: int
    plain: str | None = None


@dataclass(frozen=True)
class Document:
    origin: str
    data: Any
    positions: Mapping[FieldPath, Position]

    def at(self, path: FieldPath) -> Position:
        """The position of `path`, or of its nearest ancestor that is in the file."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return Position(1, 1, 1, 1)

    def issue(self, path: FieldPath, message: str, *, at_key: bool = False) -> Issue:
        pos = self.at(path)
        line, col = (pos.key_line, pos.key_col) if at_key else (pos.line, pos.col)
        return Issue(self.origin, line, col, format_path(path), message)


class DocumentError(Exception):
    """The bytes are not a readable YAML document; `issues` says why and where."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


class _Refused(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, refusing anchors and aliases and capping the nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                problem="YAML anchors and aliases (&name, *name) are not allowed "
                "in pullnix.yaml; write the value out in full",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                problem=f"nested more than {MAX_DEPTH} levels deep; "
                "a desired-state file is never this deep",
                problem_mark=event.start_mark,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_document(text: bytes, origin: str) -> Document:
    """Parse one YAML document from `text`; raise DocumentError saying what and where."""

    def whole_file(message: str) -> DocumentError:
        return DocumentError([Issue(origin, 1, 1, "", message)])

    if len(text) > MAX_BYTES:
        raise whole_file(
            f"the file is {len(text) / MAX_BYTES:.1f} MiB; a desired-state file "
            "may be at most 1 MiB"
        )
    if text.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise whole_file("the file is UTF-16; save it as UTF-8")
    if b"\x00" in text:
        raise whole_file("this is a binary file (it contains NUL bytes), not YAML text")
    try:
        source = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(text, exc.start)
        raise DocumentError(
            [
                Issue(
                    origin,
                    line,
                    col,
                    "",
                    f"not UTF-8 text: byte 0x{text[exc.start]:02x} cannot be decoded; "
                    "save the file as UTF-8",
                )
            ]
        ) from None
    source = source.removeprefix("\ufeff")
    try:  # the reader checks every character as it is made, before any parsing
        loader = _Loader(source)
    except yaml.reader.ReaderError as exc:
        raise _unprintable(origin, source, exc) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise DocumentError([_syntax_issue(origin, exc)]) from None
    except yaml.reader.ReaderError as exc:
        raise _unprintable(origin, source, exc) from None
    finally:
        loader.dispose()
    if node is None:
        raise whole_file(
            "the file is empty; it must hold one NixOSDeployment (apiVersion, kind, metadata, spec)"
        )
    builder = _Builder(origin, loader)
    data = builder.build(node, ())
    if builder.issues:
        raise DocumentError(builder.issues)
    return Document(origin, data, builder.positions)


def _unprintable(origin: str, source: str, exc: yaml.reader.ReaderError) -> DocumentError:
    line, col = _line_col(source.encode(), len(source[: exc.position].encode()))
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)  # an int
    message = f"the character {code:#x} is not allowed in YAML; remove it"
    return DocumentError([Issue(origin, line, col, "", message)])


def _syntax_issue(origin: str, exc: yaml.MarkedYAMLError) -> Issue:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "cannot be read"
    if isinstance(exc, _Refused):
        return Issue(origin, line, col, "", problem)
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in problem:
        return Issue(
            origin,
            line,
            col,
            "",
            "a second YAML document starts here; the file must hold exactly one NixOSDeployment",
        )
    context = exc.context_mark
    if exc.context and context is not None and context is not mark:
        problem += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
    return Issue(origin, line, col, "", f"not valid YAML: {problem}")


def _line_col(text: bytes, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line_start = before.rfind(b"\n") + 1
    return before.count(b"\n") + 1, len(before[line_start:].decode("utf-8", "replace")) + 1


class _Builder:
    """Plain data from a composed node tree, recording positions and problems."""

    def __init__(self, origin: str, loader: _Loader) -> None:
        self.origin = origin
        self.loader = loader
        self.positions: dict[FieldPath, Position] = {}
        self.issues: list[Issue] = []

    def problem(self, node: yaml.Node, path: FieldPath, message: str) -> None:
        mark = node.start_mark
        self.issues.append(
            Issue(self.origin, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def build(self, node: yaml.Node, path: FieldPath, key: yaml.Node | None = None) -> Any:
        key_mark = (key or node).start_mark
        plain = node.value if isinstance(node, yaml.ScalarNode) and node.style is None else None
        self.positions[path] = Position(
            node.start_mark.line + 1,
            node.start_mark.column + 1,
            key_mark.line + 1,
            key_mark.column + 1,
            plain,
        )
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _PLAIN_TAGS:
            return self._scalar(node, path)
        if isinstance(node, yaml.ScalarNode) and node.tag == _TIMESTAMP:
            return node.value
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.problem(
            node,
            path,
            f"the YAML tag {tag} is not allowed here; "
            "remove the tag (only plain YAML values are accepted)",
        )
        return None

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        try:
            return self.loader.construct_object(node)
        except (ValueError, KeyError, yaml.YAMLError):  # !!int "x", 5000 digits, !!bool "maybe"
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            self.problem(
                node,
                path,
                f"{shown} cannot be read as {tag} (too long or malformed); "
                "fix the value or quote it",
            )
            return None

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.problem(
                    key_node,
                    path,
                    "YAML merge keys (<<) are not allowed; write the fields out in full",
                )
                continue
            key: Any = None
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag in _PLAIN_TAGS:
                key = self._scalar(key_node, path)
            if not isinstance(key, str):
                if isinstance(key_node, yaml.ScalarNode):
                    self.problem(
                        key_node,
                        path,
                        f"the key {key_node.value} is "
                        f"{_kind_of(key)}, but keys must be strings; quote it: "
                        f'"{key_node.value}"',
                    )
                else:
                    shape = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                    self.problem(key_node, path, f"a key must be a string, not a {shape}")
                continue
            if key in first_line:
                self.problem(
                    key_node,
                    (*path, key),
                    f"duplicate key (first set on line {first_line[key]}); keep only one",
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key), key_node)
        return out


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), "not a string"
    )
