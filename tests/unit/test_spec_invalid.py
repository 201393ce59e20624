"""Every invalid desired-state file in tests/data/invalid/ fails with its exact message and place.

One row per file: the problems `load_spec_file` reports, each as
`LINE:COL: field.path: message` (the file name is the same for all, so it is
left out of the table). A changed message is a changed user interface: update
the row on purpose.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.api import SpecError, load_spec_file, load_spec_text
from reconciler.api.document import MAX_BYTES, MAX_DEPTH

INVALID = Path(__file__).parent.parent / "data" / "invalid"

HEAD = (
    "apiVersion: pullnix.dev/v1alpha1\nkind: NixOSDeployment\nmetadata:\n  name: fleet\n"
    'spec:\n  configuration:\n    flake: "nixosConfigurations.{host}"\n'
)

EXPECTED = [
    (
        "alias-bomb.yaml",
        [
            "1:4: YAML anchors and aliases (&name, *name) are not allowed in "
            "pullnix.yaml; write the value out in full",
        ],
    ),
    (
        "bad-body-regex.yaml",
        [
            "10:58: spec.healthChecks[0].http.bodyRegex: not a valid regular "
            "expression: missing ), unterminated subpattern at position 2",
        ],
    ),
    (
        "bad-duration.yaml",
        [
            '8:13: spec.interval: "5 minutes" is not a duration; write a number '
            "with a unit, such as 30s, 5m, 1h or 1h30m (units: ms, s, m, h)",
        ],
    ),
    (
        "bad-reboot-window.yaml",
        [
            '10:21: spec.reboot.window.start: "25:00" is not a time of day; write '
            'HH:MM in 24-hour time, quoted, such as "02:00"',
        ],
    ),
    (
        "binary.bin",
        [
            "1:1: this is a binary file (it contains NUL bytes), not YAML text",
        ],
    ),
    (
        "check-name-not-a-string.yaml",
        [
            "9:13: spec.healthChecks[0].name: expected a string, got an integer "
            '(42); YAML reads the unquoted 42 that way, so quote it: "42"',
        ],
    ),
    (
        "duplicate-check-name.yaml",
        [
            "11:13: spec.healthChecks[1].name: the name 'web' is already used by "
            "entry [0] of this list; each entry needs its own name",
        ],
    ),
    (
        "duplicate-key.yaml",
        [
            "10:3: spec.interval: duplicate key (first set on line 8); keep only one",
        ],
    ),
    (
        "duration-without-unit.yaml",
        [
            "9:21: spec.rollback.confirmTimeout: expected a duration such as "
            '"30s", got an integer (120); add a unit: "120s"',
        ],
    ),
    (
        "empty-argv.yaml",
        [
            "9:24: spec.hooks.postDeploy.argv: must not be empty; list at least one item",
        ],
    ),
    (
        "empty-reboot-window.yaml",
        [
            "9:35: spec.reboot.window.end: the window is empty: end is the same as start",
        ],
    ),
    (
        "empty.yaml",
        [
            "1:1: the file is empty; it must hold one NixOSDeployment "
            "(apiVersion, kind, metadata, spec)",
        ],
    ),
    (
        "flake-and-classic.yaml",
        [
            "8:5: spec.configuration.classic: flake is already set, and only one "
            "of flake, classic, prebuilt may be",
        ],
    ),
    (
        "flake-and-prebuilt.yaml",
        [
            "8:5: spec.configuration.prebuilt: flake is already set, and only one "
            "of flake, classic, prebuilt may be",
        ],
    ),
    (
        "prebuilt-absolute-lock.yaml",
        [
            '8:17: spec.configuration.prebuilt.lockFile: "/etc/lock.json" is not a path '
            "inside the repository (no leading '/', no '..', no spaces), such as "
            '"hosts/{host}/configuration.nix"',
        ],
    ),
    (
        # `pullnix publish` writes the lock here: it must not escape CI's work tree.
        "prebuilt-lock-escapes.yaml",
        [
            '8:17: spec.configuration.prebuilt.lockFile: "hosts/../../etc/cron.d/pullnix" '
            "is not a path inside the repository (no leading '/', no '..', no spaces), such "
            'as "hosts/{host}/configuration.nix"',
        ],
    ),
    (
        "host-glob-not-a-string.yaml",
        [
            '11:5: spec.hosts: the key 1 is an integer, but keys must be strings; quote it: "1"',
        ],
    ),
    (
        "missing-configuration.yaml",
        [
            "5:1: spec.configuration: required field is missing; add it under spec",
        ],
    ),
    (
        "missing-url.yaml",
        [
            "10:7: spec.healthChecks[0].http.url: required field is missing; add "
            "it under spec.healthChecks[0].http",
        ],
    ),
    (
        "misspelt-metadata.yaml",
        [
            "1:1: metadata: required field is missing; add it under the top level of the file",
            "3:1: metdata: unknown field; did you mean 'metadata'?",
        ],
    ),
    (
        "nested-hosts.yaml",
        [
            '11:7: spec.hosts["edge-*"].hosts: hosts cannot be nested; an '
            "override applies to the hosts its glob matches, so put this glob "
            "under spec.hosts",
        ],
    ),
    (
        "no-check-kind.yaml",
        [
            "9:7: spec.healthChecks[0]: set exactly one of gitRemote, http, tcp, systemd, command",
        ],
    ),
    (
        "non-utf8.yaml",
        [
            "8:17: not UTF-8 text: byte 0xe9 cannot be decoded; save the file as UTF-8",
        ],
    ),
    (
        "not-a-mapping.yaml",
        [
            "1:1: the document must be a mapping with apiVersion, kind, metadata "
            "and spec, not a list",
        ],
    ),
    (
        "not-yaml.yaml",
        [
            "4:1: not valid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence at line 3, column 23)",
        ],
    ),
    (
        "override-makes-it-invalid.yaml",
        [
            '10:32: spec.hosts["legacy-*"].configuration.classic: flake is '
            "already set, and only one of flake, classic, prebuilt may be (in the spec "
            "merged for hosts matching 'legacy-*')",
        ],
    ),
    (
        "port-out-of-range.yaml",
        [
            "10:38: spec.healthChecks[0].tcp.port: 70000 is out of range; use a "
            "value from 1 to 65535",
        ],
    ),
    (
        "python-tag.yaml",
        [
            "8:13: spec.revision: the YAML tag !!python/object/apply:os.system is "
            "not allowed here; remove the tag (only plain YAML values are "
            "accepted)",
        ],
    ),
    (
        "reboot-window-unquoted.yaml",
        [
            "10:21: spec.reboot.window.start: expected a string, got an integer "
            '(1350); YAML reads the unquoted 22:30 that way, so quote it: "22:30"',
        ],
    ),
    (
        "retries-not-an-integer.yaml",
        [
            '11:16: spec.healthChecks[0].retries: expected an integer, got a string ("three")',
        ],
    ),
    (
        "severity-out-of-range.yaml",
        [
            "10:32: spec.gates[0].vulnix.maxNewSeverity: 11 is out of range; use "
            "a value from 0 to 10",
        ],
    ),
    (
        "status-in-file.yaml",
        [
            "8:1: status: written by the agent into its status.json, never by the "
            "repository; remove it",
        ],
    ),
    (
        "strategy-not-a-mapping.yaml",
        [
            '8:13: spec.strategy: expected a mapping, got a string ("switch")',
        ],
    ),
    (
        "suspend-not-a-boolean.yaml",
        [
            '8:12: spec.suspend: expected true or false, got a string ("no")',
        ],
    ),
    (
        "tagged-value-of-the-wrong-kind.yaml",
        [
            "10:38: spec.healthChecks[0].tcp.port: twenty-two cannot be read as "
            "!!int (too long or malformed); fix the value or quote it",
        ],
    ),
    (
        "two-check-kinds.yaml",
        [
            "11:7: spec.healthChecks[0].tcp: http is already set, and only one of "
            "gitRemote, http, tcp, systemd, command may be; give each its own "
            "entry in the list",
        ],
    ),
    (
        "two-documents.yaml",
        [
            "8:1: a second YAML document starts here; the file must hold exactly "
            "one NixOSDeployment",
        ],
    ),
    (
        "two-gate-kinds.yaml",
        [
            "11:7: spec.gates[0].command: vulnix is already set, and only one of "
            "vulnix, command may be; give each its own entry in the list",
        ],
    ),
    (
        "unknown-action.yaml",
        [
            '9:13: spec.strategy.action: "swtich" is not one of switch, boot, '
            "test; did you mean switch?",
        ],
    ),
    (
        "unknown-field-in-health-check.yaml",
        [
            "11:7: spec.healthChecks[0].retires: unknown field; did you mean 'retries'?",
        ],
    ),
    (
        "wrong-api-version.yaml",
        [
            '1:13: apiVersion: "pullnix.dev/v1" is not an apiVersion pullnix '
            "reads; write apiVersion: pullnix.dev/v1alpha1",
        ],
    ),
    (
        "wrong-kind.yaml",
        [
            '2:7: kind: "Kustomization" is not a kind pullnix reads; write kind: NixOSDeployment',
        ],
    ),
]


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    assert caught.value.reason == "InvalidSpec"
    prefix = f"{path}:"
    lines = [str(issue) for issue in caught.value.issues]
    assert all(line.startswith(prefix) for line in lines)
    return [line.removeprefix(prefix) for line in lines]


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[row[0] for row in EXPECTED])
def test_invalid_file_fails_with_its_exact_message_and_place(name: str, expected: list[str]):
    assert problems(INVALID / name) == expected


def test_every_invalid_file_has_a_row_in_the_table():
    assert sorted(p.name for p in INVALID.iterdir()) == sorted(row[0] for row in EXPECTED)


def test_more_than_twenty_kinds_of_mistake_are_covered():
    assert len(EXPECTED) >= 20


def test_a_file_over_one_mebibyte_is_refused_before_it_is_parsed(tmp_path: Path):
    big = tmp_path / "pullnix.yaml"
    big.write_bytes(HEAD.encode() + b"#" * (5 * MAX_BYTES))
    assert problems(big) == ["1:1: the file is 5.0 MiB; a desired-state file may be at most 1 MiB"]


def test_bytes_over_one_mebibyte_are_refused_before_they_are_parsed():
    text = b"spec: [" * (MAX_BYTES // 7 + 1)  # would be slow and deep if it were parsed
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "commit:pullnix.yaml")
    assert str(caught.value) == (
        "commit:pullnix.yaml:1:1: the file is 1.0 MiB; a desired-state file may be at most 1 MiB"
    )


def test_an_alias_bomb_fails_at_its_first_anchor_and_fast():
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 30)]
    start = time.monotonic()
    with pytest.raises(SpecError) as caught:
        load_spec_text("\n".join(levels).encode(), "bomb.yaml")
    assert time.monotonic() - start < 1.0
    assert str(caught.value).startswith("bomb.yaml:1:5: YAML anchors and aliases")


def test_nesting_deeper_than_any_spec_is_refused_without_recursing_away():
    with pytest.raises(SpecError) as caught:
        load_spec_text(b"spec: " + b"[" * 10_000 + b"]" * 10_000, "deep.yaml")
    assert str(caught.value) == (
        f"deep.yaml:1:{6 + MAX_DEPTH}: nested more than {MAX_DEPTH} levels deep; "
        "a desired-state file is never this deep"
    )


def test_a_utf16_file_is_told_to_become_utf8():
    with pytest.raises(SpecError) as caught:
        load_spec_text(HEAD.encode("utf-16"), "wide.yaml")
    assert str(caught.value) == "wide.yaml:1:1: the file is UTF-16; save it as UTF-8"


def test_a_missing_file_is_an_invalid_spec_naming_the_file(tmp_path: Path):
    assert problems(tmp_path / "absent.yaml") == [
        "1:1: cannot read the file: No such file or directory"
    ]


def test_all_problems_are_reported_at_once_in_file_order():
    text = HEAD + "  interval: soon\n  suspend: maybe\n  healthChecks: [{name: x, tcp: {}}]\n"
    with pytest.raises(SpecError) as caught:
        load_spec_text(text.encode(), "p.yaml")
    assert [(i.line, i.path) for i in caught.value.issues] == [
        (8, "spec.interval"),
        (9, "spec.suspend"),
        (10, "spec.healthChecks[0].tcp.host"),
        (10, "spec.healthChecks[0].tcp.port"),
    ]
    assert str(caught.value).endswith("(and 3 more problems)")


def test_a_number_too_long_to_read_is_a_problem_not_a_crash():
    text = HEAD + "  healthChecks: [{name: a, tcp: {host: h, port: " + "9" * 5000 + "}}]\n"
    with pytest.raises(SpecError) as caught:
        load_spec_text(text.encode(), "n.yaml")
    assert str(caught.value) == (
        "n.yaml:8:49: spec.healthChecks[0].tcp.port: " + "9" * 40 + "... cannot be read as "
        "!!int (too long or malformed); fix the value or quote it"
    )
