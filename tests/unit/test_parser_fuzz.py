"""Every parser of untrusted input, fed mutants of valid inputs, parses or says why not.

The parsers: the sockets' framing and requests (`wire.decode_line` with
`protocol.parse_request`), health checks (`checks.parse_check`), the helper's
answers (`answers.operation_from_json`, `answers.status_from_wire`), the helper's
journal (`helper/journal.Journal.load`), the SystemLock (`core/lock.parse_lock`),
`pullnix.yaml` (`api/spec.load_spec_text`) and `agent.toml` (`common/config`).
Each may answer only with a value or its documented error; anything else is a
defect. `tests/support/mutate.py` makes the mutants from a fixed seed; the
inputs that once escaped are kept in tables, one test each.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.api.issues import SpecError
from reconciler.api.spec import load_spec_text
from reconciler.common import answers
from reconciler.common import protocol as p
from reconciler.common.answers import (
    operation_from_json,
    operation_to_json,
    status_from_wire,
    status_to_wire,
)
from reconciler.common.checks import check_to_wire, parse_check
from reconciler.common.config import ConfigError, load_machine_config, parse_machine_config
from reconciler.common.operation import State
from reconciler.core.lock import InvalidLock, LockedHost, parse_lock, render_lock
from reconciler.helper.journal import Journal, JournalError
from tests.support.mutate import Mutator, nested, outcomes
from tests.unit.test_machine_config import FULL
from tests.unit.test_protocol_roundtrip import CHECKS, REQUESTS, STATUSES, operation

DATA = Path(__file__).parent.parent / "data" / "valid"
STORE = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"

# --- seeds -----------------------------------------------------------------------------

REQUEST_SEEDS = [{"v": 1, **p.request_to_wire(r)} for r in REQUESTS.values()]
CHECK_SEEDS = [check_to_wire(c) for c in CHECKS]
OPERATION_SEEDS = [operation_to_json(operation(s)) for s in State]
STATUS_SEEDS = [status_to_wire(s) for s in STATUSES.values()]
LOCK_SEED = render_lock(
    "3f2a1c" + "0" * 34,
    "2026-11-25T18:31:39Z",
    {"edge-01": LockedHost(STORE, 1234), "edge-02": LockedHost(STORE)},
).encode()
SPEC_SEEDS = [path.read_bytes() for path in sorted(DATA.glob("*.yaml"))]
CONFIG_SEED = FULL.encode()


def _text(value: Any, dump: Callable[[Any], str], fallback: bytes) -> bytes:
    """`value` written out, or `fallback` when the writer cannot (too deep, say)."""
    try:
        return dump(value).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError, TypeError, yaml.YAMLError):
        return fallback


def _json_mutant(seeds: list[Any]) -> Callable[[Mutator], bytes]:
    """JSON text, as it crosses a socket or lands in a file: half of the time a mutated
    value written out, else one's text with its bytes mutated."""

    def make(m: Mutator) -> bytes:
        text = json.dumps(m.rng.choice(seeds)).encode()
        if m.rng.random() < 0.5:
            return _text(m.value(json.loads(text)), json.dumps, m.data(text))
        return m.data(text)

    return make


def _journal(raw: bytes, tmp: Path) -> object:
    """The journal, and the same text as an archived operation (never an error there)."""
    (tmp / "journal.json").write_bytes(raw)
    (tmp / "operations").mkdir(exist_ok=True)
    (tmp / "operations" / "op-1.json").write_bytes(raw)
    Journal(tmp).finished()
    return Journal(tmp).load()


def _fresh(read: Callable[[bytes], object]) -> Callable[[bytes, Path], object]:
    """`read` with no finished operation remembered: a mutant keeps its seed's id, state and
    message, so the memo would answer the seed for it (and, after it, the mutant for the
    seed, to the next test reading that seed)."""

    def parse(raw: bytes, tmp: Path) -> object:
        answers._finished.clear()
        try:
            return read(raw)
        finally:
            answers._finished.clear()

    return parse


def _lock_mutant(m: Mutator) -> bytes:
    if m.rng.random() < 0.5:
        return m.data(LOCK_SEED)
    return _text(m.value(json.loads(LOCK_SEED)), json.dumps, LOCK_SEED)


def _spec_mutant(m: Mutator) -> bytes:
    seed = m.rng.choice(SPEC_SEEDS)
    if m.rng.random() < 0.5:
        return m.data(seed)
    return _text(m.value(yaml.safe_load(seed)), yaml.safe_dump, seed)


def _config_mutant(m: Mutator) -> Any:
    """agent.toml's bytes mutated, or its parsed tables (what `tomllib` can make) mutated."""
    value = m.value(tomllib.loads(FULL)) if m.rng.random() < 0.5 else None
    if isinstance(value, dict) and _text(value, json.dumps, b"") != b"":  # TOML nests that
        return value
    return m.data(CONFIG_SEED)


def _config(raw: Any, tmp: Path) -> object:
    if isinstance(raw, dict):
        return parse_machine_config(raw)
    (tmp / "agent.toml").write_bytes(raw)
    return load_machine_config(tmp / "agent.toml")


@dataclass(frozen=True)
class Target:
    parse: Callable[[Any, Path], object]
    inputs: Callable[[Mutator], Any]
    errors: tuple[type[BaseException], ...]


#: Each parser, how its mutants are made, and the errors its docstring promises.
TARGETS: dict[str, Target] = {
    "request": Target(
        lambda raw, _: p.parse_request(p.decode_line(raw)),
        _json_mutant(REQUEST_SEEDS),
        (p.ProtocolError,),
    ),
    "check": Target(
        lambda raw, _: parse_check(p.decode_line(raw), 0),
        _json_mutant(CHECK_SEEDS),
        (p.ProtocolError,),
    ),
    "operation": Target(
        _fresh(lambda raw: operation_from_json(p.decode_line(raw))),
        _json_mutant(OPERATION_SEEDS),
        (p.ProtocolError, KeyError, TypeError, ValueError),
    ),
    "status": Target(
        _fresh(lambda raw: status_from_wire(p.decode_line(raw))),
        _json_mutant(STATUS_SEEDS),
        (p.ProtocolError, KeyError, TypeError, ValueError),
    ),
    "journal": Target(
        lambda raw, tmp: _fresh(lambda text: _journal(text, tmp))(raw, tmp),
        _json_mutant([{"v": 1, "operation": op} for op in OPERATION_SEEDS]),
        (JournalError,),
    ),
    "lock": Target(
        lambda raw, _: parse_lock(raw, "pullnix.lock.json"), _lock_mutant, (InvalidLock,)
    ),
    "spec": Target(lambda raw, _: load_spec_text(raw, "pullnix.yaml"), _spec_mutant, (SpecError,)),
    "config": Target(_config, _config_mutant, (ConfigError,)),
}

#: Iterations per parser here: the fixed seed's mutants, a few seconds for all of them.
ITERATIONS = {"spec": 150, "config": 300, "journal": 300}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # re: "possible nested set" is a regex
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_parser_answers_every_mutant_with_a_value_or_its_documented_error(
    name: str, tmp_path: Path
) -> None:
    target = TARGETS[name]
    _, findings = outcomes(
        lambda raw: target.parse(raw, tmp_path),
        target.inputs,
        target.errors,
        seed=20261201,
        iterations=ITERATIONS.get(name, 600),
    )
    assert [f"{type(f.error).__name__}: {f.error}"[:200] for f in findings] == []


# --- the inputs that once escaped, one table per owner -----------------------------------

OPERATION = OPERATION_SEEDS[0]
DEEP_LINE = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "line",
    [DEEP_LINE, b'{"v":1,"op":' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"a":' * 3000 + b"1"],
    ids=["deep list", "deep op", "deep object, cut short"],
)
def test_a_line_nested_deeper_than_python_parses_is_bad_json(line: bytes) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_line(line)
    assert caught.value.code == p.ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    "raw",
    [
        [],
        -(2**63) - 1,
        "\x00",
        {**OPERATION, "state": nested(1000)},
        {**OPERATION, "state": ["Failed"]},
        {**OPERATION, "transitions": [{"state": nested(1000), "at": "t", "message": ""}]},
    ],
    ids=["a list", "a number", "a string", "deep state", "listed state", "deep transition"],
)
def test_what_is_not_an_operation_is_a_documented_error(raw: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        operation_from_json(raw)


@pytest.mark.parametrize(
    "raw",
    [float("-inf"), "x", {**STATUS_SEEDS[0], "config": "\udcff"}, {"config": []}],
    ids=["a number", "a string", "config a string", "config a list"],
)
def test_what_is_not_a_status_answer_is_a_type_error(raw: Any) -> None:
    with pytest.raises(TypeError):
        status_from_wire(raw)


@pytest.mark.parametrize(
    "text",
    [
        DEEP_LINE,
        json.dumps(
            {"v": 1, "operation": {**OPERATION, "request": {"storePath": "/nix/storeNaN/x"}}}
        ).encode(),
        json.dumps(
            {"v": 1, "operation": {**OPERATION, "request": {"storePath": STORE, "trial": 1}}}
        ).encode(),
    ],
    ids=["deep", "a request's store path refused", "a request's field refused"],
)
def test_a_journal_that_does_not_read_is_a_journal_error(text: bytes, tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_bytes(text)
    with pytest.raises(JournalError):
        Journal(tmp_path).load()


@pytest.mark.parametrize("text", [b"[]", b"7", DEEP_LINE, b'"op"'])
def test_an_archived_operation_that_does_not_read_is_left_out(text: bytes, tmp_path: Path) -> None:
    (tmp_path / "operations").mkdir()
    (tmp_path / "operations" / "op-1.json").write_bytes(text)
    assert Journal(tmp_path).finished() == ()
    assert Journal(tmp_path).lookup("op-1") is None


@pytest.mark.parametrize(
    "text",
    [
        b"a = " + b"[" * 5000,
        b"state_dir = " + b"9" * 5000,
        b"[helper]\nagent_uids = [" + b"1" * 4301 + b"]",
    ],
    ids=["deep array", "an integer of 5000 digits", "a uid of 4301 digits"],
)
def test_toml_the_parser_cannot_hold_is_a_config_error(text: bytes, tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_bytes(text)
    with pytest.raises(ConfigError, match=r"agent\.toml: not TOML a machine config can hold"):
        load_machine_config(tmp_path / "agent.toml")


@pytest.mark.parametrize("char", ["\x7f", "\x1b", "\ufffe", "\x9f"])
def test_a_character_yaml_forbids_is_a_spec_error_naming_it(char: str) -> None:
    text = f"apiVersion: pullnix.dev/v1alpha1\nkind: Nixos{char}Deployment\n".encode()
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "pullnix.yaml")
    [issue] = caught.value.issues
    assert (issue.line, issue.col) == (2, 12)
    assert f"the character {ord(char):#x} is not allowed in YAML" in issue.message


HOSTILE_REGEXES = ["(" * 1000 + ")" * 1000, "(?:" * 5000 + ")" * 5000, "a{99999999999}"]


@pytest.mark.parametrize("pattern", HOSTILE_REGEXES, ids=["groups", "non-capturing", "repeat"])
def test_a_body_regex_python_cannot_compile_is_a_bad_field(pattern: str) -> None:
    check = {"name": "api", "http": {"url": "http://127.0.0.1/", "bodyRegex": pattern}}
    with pytest.raises(p.ProtocolError) as caught:
        parse_check(check, 0)
    assert caught.value.code == p.ErrorCode.BAD_FIELD
    assert caught.value.message.startswith("healthChecks[0].http.bodyRegex: ")


@pytest.mark.parametrize("pattern", HOSTILE_REGEXES, ids=["groups", "non-capturing", "repeat"])
def test_a_body_regex_python_cannot_compile_is_a_spec_error_at_the_field(pattern: str) -> None:
    seed = (DATA / "design-example.yaml").read_text()
    api = 'http: {url: "http://127.0.0.1:8080/healthz", expectStatus: 200}'
    text = seed.replace(api, api[:-1] + f", bodyRegex: '{pattern}'}}")
    assert text != seed
    with pytest.raises(SpecError) as caught:
        load_spec_text(text.encode(), "pullnix.yaml")
    [issue] = caught.value.issues
    assert issue.path == "spec.healthChecks[1].http.bodyRegex"
    assert "not a regular expression Python compiles" in issue.message
