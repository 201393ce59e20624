"""A small seeded mutation fuzzer for pullnix's parsers of untrusted input (stdlib only).

Owns the mutations: of parsed values (drop, duplicate, rename or replace a key or
item; swap a value's type for null, a boolean, a huge or negative integer, NaN or
infinity, a long string, a lone surrogate, nesting 1000 deep) and of bytes
(truncation, byte flips, inserted non-UTF-8 bytes, deleted or repeated ranges,
deep brackets). `outcomes` runs a parser over mutants of valid seeds and returns
every input that raised something other than the parser's documented errors.

Must not: know any parser; the tests hand in the parser, its seeds and its errors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DEEP = 1000


def nested(depth: int, kind: type = list) -> Any:
    """`depth` lists (or dicts) inside each other, built without recursion."""
    value: Any = []
    for _ in range(depth):
        value = [value] if kind is list else {"a": value}
    return value


def _nasty(rng: random.Random) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: True,
        lambda: False,
        lambda: 0,
        lambda: -1,
        lambda: 2**64,
        lambda: -(2**63) - 1,
        lambda: 10**400,
        lambda: float("nan"),
        lambda: float("inf"),
        lambda: float("-inf"),
        lambda: 1e308,
        lambda: 0.5,
        lambda: "NaN",
        lambda: "Infinity",
        lambda: "",
        lambda: "x" * rng.choice((1, 300, 70_000)),
        lambda: "\udcff",
        lambda: "\x00",
        lambda: "../../etc/passwd",
        lambda: "(" * 1000 + ")" * 1000,
        lambda: "a{99999999999}",
        lambda: "/nix/store/" + "a" * 32 + "-x",
        lambda: "1e999",
        lambda: [],
        lambda: {},
        lambda: [None],
        lambda: {"": None},
        lambda: nested(DEEP),
        lambda: nested(DEEP, dict),
    ]
    return rng.choice(choices)()


class Mutator:
    """Seeded mutations; the same seed gives the same mutants."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def value(self, seed: Any, rounds: int = 3) -> Any:
        """`seed` (a JSON-like value) with 1..`rounds` structural mutations."""
        value = json.loads(json.dumps(seed))  # a private copy
        for _ in range(self.rng.randint(1, rounds)):
            value = self._once(value)
        return value

    def _once(self, root: Any) -> Any:
        nodes: list[tuple[Any, Any, Any]] = [(None, None, root)]
        stack = [root] if isinstance(root, dict | list) else []
        while stack and len(nodes) < 500:
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in list(items):
                nodes.append((node, key, child))
                if isinstance(child, dict | list) and len(nodes) < 500:
                    stack.append(child)
        parent, key, target = self.rng.choice(nodes)
        if parent is None:
            if isinstance(target, dict | list) and self.rng.random() < 0.8:
                return self._mutate_container(target)
            return _nasty(self.rng)
        if isinstance(target, dict | list) and self.rng.random() < 0.5:
            self._mutate_container(target)
            return root
        parent[key] = _nasty(self.rng) if self.rng.random() < 0.9 else [target]
        return root

    def _mutate_container(self, node: Any) -> Any:
        rng = self.rng
        if isinstance(node, dict):
            keys = list(node)
            what = rng.randrange(4)
            if keys and what == 0:
                del node[rng.choice(keys)]
            elif keys and what == 1:
                key = rng.choice(keys)
                node[key + rng.choice(("_", "X", "\x00"))] = node[key]
            elif keys and what == 2:
                key = rng.choice(keys)
                node[key.upper() if rng.random() < 0.5 else key[:-1]] = node.pop(key)
            else:
                node[rng.choice(("extra", "", "v", "op", "kind"))] = _nasty(rng)
        elif isinstance(node, list):
            what = rng.randrange(3)
            if node and what == 0:
                del node[rng.randrange(len(node))]
            elif node and what == 1:
                node.extend(node[: rng.randint(1, 3)] * rng.choice((1, 50)))
            else:
                node.insert(rng.randint(0, len(node)), _nasty(rng))
        return node

    def data(self, text: bytes, rounds: int = 3) -> bytes:
        """`text` with 1..`rounds` byte-level mutations."""
        out = bytearray(text)
        rng = self.rng
        for _ in range(rng.randint(1, rounds)):
            at = rng.randint(0, len(out))
            what = rng.randrange(7)
            if what == 0:
                del out[at:]
            elif what == 1 and out:
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
            elif what == 2:
                out[at:at] = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xfe\xff"))
            elif what == 3:
                del out[at : at + rng.randint(1, 16)]
            elif what == 4:
                out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(2, 20)
            elif what == 5:
                depth = rng.choice((10, 100, DEEP, 5000))
                out[at:at] = rng.choice((b"[", b'{"a":', b"- ", b"a = [")) * depth
            else:
                out[at:at] = rng.choice(_SNIPPETS)
        return bytes(out)


#: Text any of the formats gives meaning to: JSON's edge cases, YAML's anchors, tags,
#: merge keys and directives, TOML's tables, dates, special floats and escapes.
_SNIPPETS = (
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"9" * 5000,
    b'"',
    b"\\u",
    b"\\ud800",
    b"\n",
    b"\r",
    b"\t",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"!!python/object/apply:os.system ",
    b"<<: ",
    b"? ",
    b"%YAML 1.1\n---\n",
    b"\n---\n",
    b"\n...\n",
    b"[[a]]\n",
    b'"""',
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"nan",
    b"0x7fffffffffffffffff",
    b"{a=1}",
    b"\\U0010ffff",
    b"\x7f",
    b"\xef\xbb\xbf",
    b"(" * 1000,
    b"{99999999999}",
)


@dataclass(frozen=True)
class Finding:
    """An input that made the parser raise something it does not document."""

    input: Any
    error: BaseException


def outcomes(
    parse: Callable[[Any], object],
    inputs: Sequence[Any] | Callable[[Mutator], Any],
    allowed: tuple[type[BaseException], ...],
    *,
    seed: int,
    iterations: int,
) -> tuple[int, list[Finding]]:
    """Run `parse` over `iterations` mutants (made by `inputs(mutator)`); how many parsed,
    and every input that raised an exception outside `allowed`."""
    mutator = Mutator(seed)
    parsed = 0
    findings: list[Finding] = []
    for _ in range(iterations):
        raw = inputs(mutator) if callable(inputs) else mutator.rng.choice(inputs)
        try:
            parse(raw)
        except allowed:
            continue
        except Exception as exc:
            findings.append(Finding(raw, exc))
            continue
        parsed += 1
    return parsed, findings
