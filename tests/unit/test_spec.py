"""Loading valid desired-state files: defaults, frozen values, host overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.api import SpecError, for_host, format_path, load_spec_file, load_spec_text, merge
from reconciler.api.convert import deployment_to_data
from reconciler.core.errors import TerminalError
from reconciler.core.model import (
    Command,
    Configuration,
    DeploymentSpec,
    GitRemoteCheck,
    HealthCheck,
    HostOverride,
    HttpCheck,
    Metadata,
    NixOSDeployment,
    RebootWindow,
    Rollback,
    SystemdCheck,
    TcpCheck,
    VulnixGate,
)

ROOT = Path(__file__).parent.parent.parent
VALID = ROOT / "tests" / "data" / "valid"
EXAMPLES = sorted((ROOT / "examples").rglob("pullnix.yaml"))


@pytest.mark.parametrize(
    "path", [*EXAMPLES, *sorted(VALID.glob("*.yaml"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_example_and_valid_file_loads(path: Path):
    deployment = load_spec_file(path)
    assert deployment.api_version == "pullnix.dev/v1alpha1"
    assert deployment.kind == "NixOSDeployment"


def test_the_examples_are_found():
    assert ROOT / "examples" / "fleet" / "pullnix.yaml" in EXAMPLES


def test_a_minimal_file_gets_every_default_of_the_schema():
    deployment = load_spec_file(VALID / "minimal.yaml")
    assert deployment == NixOSDeployment(
        metadata=Metadata(name="minimal"),
        spec=DeploymentSpec(configuration=Configuration(classic="hosts/{host}/configuration.nix")),
    )
    spec = deployment.spec
    assert (spec.strategy.action, spec.strategy.trial) == ("switch", True)
    assert spec.rollback == Rollback(
        automatic=True, confirm_timeout=120.0, retry_failed_revision=False
    )
    assert (spec.interval, spec.drift_policy, spec.suspend) == (300.0, "report", False)


def test_the_design_example_reads_as_written():
    spec = load_spec_file(VALID / "design-example.yaml").spec
    assert spec.configuration.for_host("edge-01") == "nixosConfigurations.edge-01"
    kinds = {c.name: c.kind for c in spec.health_checks}
    assert kinds == {
        "git": GitRemoteCheck(),
        "api": HttpCheck(url="http://127.0.0.1:8080/healthz", expect_status=200),
        "units": SystemdCheck(units=("sshd.service",)),
        "custom": Command(argv=("/run/current-system/sw/bin/true",)),
        "port": TcpCheck(host="127.0.0.1", port=22),
    }
    api = spec.health_checks[1]
    assert (api.timeout, api.retries, api.interval, api.kind_name) == (10.0, 3, 5.0, "http")
    assert [g.kind for g in spec.gates] == [
        VulnixGate(max_new_severity=7.0, whitelist="vulnix-whitelist.toml"),
        Command(argv=("ci/check-closure",)),
    ]
    assert spec.reboot.window == RebootWindow(start="02:00", end="04:00")
    assert spec.hooks.post_deploy == Command(argv=("/run/current-system/sw/bin/logger", "deployed"))
    assert [o.glob for o in spec.hosts] == ["edge-*"]


def test_the_loaded_deployment_is_frozen_all_the_way_down():
    spec = load_spec_file(VALID / "design-example.yaml").spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.interval = 1.0  # type: ignore[misc]
    assert isinstance(spec.health_checks, tuple)
    patch = spec.hosts[0].patch
    assert isinstance(patch, MappingProxyType)
    with pytest.raises(TypeError):
        patch["rollback"]["confirmTimeout"] = "1s"  # type: ignore[index]


def test_a_deployment_written_back_out_loads_to_the_same_values():
    import yaml

    for path in [*EXAMPLES, *VALID.glob("*.yaml")]:
        deployment = load_spec_file(path)
        text = yaml.safe_dump(deployment_to_data(deployment), sort_keys=False).encode()
        assert load_spec_text(text, "again.yaml") == deployment


def test_durations_become_seconds():
    text = (VALID / "minimal.yaml").read_text() + (
        "  interval: 1h30m\n  rollback: {confirmTimeout: 1500ms}\n"
    )
    spec = load_spec_text(text.encode(), "d.yaml").spec
    assert (spec.interval, spec.rollback.confirm_timeout) == (5400.0, 1.5)


def test_a_spec_error_is_terminal_with_reason_invalid_spec():
    with pytest.raises(TerminalError) as caught:
        load_spec_text(b"kind: NixOSDeployment\n", "x.yaml")
    assert isinstance(caught.value, SpecError)
    assert caught.value.reason == "InvalidSpec"
    assert {i.path for i in caught.value.issues} == {"apiVersion", "metadata", "spec"}
    assert caught.value.issues[0].to_dict() == {
        "file": "x.yaml",
        "line": 1,
        "col": 1,
        "path": "apiVersion",
        "message": "required field is missing; add it under the top level of the file",
    }


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (("spec", "healthChecks", 1, "http", "url"), "spec.healthChecks[1].http.url"),
        (("spec", "hosts", "edge-*", "interval"), 'spec.hosts["edge-*"].interval'),
        (("spec", "hosts", 'a"b'), 'spec.hosts["a\\"b"]'),
        ((), ""),
    ],
)
def test_field_paths_read_like_the_document(path: tuple[str | int, ...], shown: str):
    assert format_path(path) == shown


# --- hosts: the merge rule --------------------------------------------------------------


@pytest.fixture(scope="module")
def overrides() -> NixOSDeployment:
    return load_spec_file(VALID / "overrides.yaml")


def test_a_host_no_glob_matches_gets_the_spec_without_hosts(overrides: NixOSDeployment):
    spec = for_host(overrides, "server-02").spec
    assert spec == dataclasses.replace(overrides.spec, hosts=())


def test_maps_merge_deeply(overrides: NixOSDeployment):
    rollback = for_host(overrides, "edge-02").spec.rollback
    assert rollback == Rollback(automatic=False, confirm_timeout=120.0)


def test_lists_and_scalars_replace(overrides: NixOSDeployment):
    spec = for_host(overrides, "edge-02").spec
    assert [c.name for c in spec.health_checks] == ["web"]
    assert spec.health_checks[0].timeout == 10.0  # a replacing entry gets its own defaults
    assert spec.interval == 900.0


def test_every_matching_glob_applies_in_file_order(overrides: NixOSDeployment):
    spec = for_host(overrides, "edge-01").spec
    assert spec.interval == 3600.0  # "*-01" comes after "edge-*"
    assert spec.strategy.action == "boot"
    assert not spec.rollback.automatic
    assert [c.name for c in spec.health_checks] == ["web"]
    assert not spec.suspend


def test_globs_are_case_sensitive(overrides: NixOSDeployment):
    assert for_host(overrides, "EDGE-02").spec.interval == 300.0


def test_the_merged_spec_must_be_valid_and_the_error_names_the_host():
    base = load_spec_file(VALID / "minimal.yaml")
    patch = MappingProxyType({"configuration": MappingProxyType({"flake": "x"})})
    broken = dataclasses.replace(
        base,
        spec=dataclasses.replace(
            base.spec,
            hosts=(
                HostOverride(
                    "legacy-*",
                    patch,
                    "m.yaml",
                    MappingProxyType(
                        {
                            (): (9, 5),
                            ("configuration",): (10, 7),
                            ("configuration", "flake"): (10, 24),
                        }
                    ),
                ),
            ),
        ),
    )
    assert for_host(broken, "other").spec == dataclasses.replace(base.spec, hosts=())
    with pytest.raises(SpecError) as caught:
        for_host(broken, "legacy-01")
    assert [str(i) for i in caught.value.issues] == [
        'm.yaml:10:24: spec.hosts["legacy-*"].configuration.flake: classic is already set, '
        "and only one of flake, classic, prebuilt may be (in the spec merged for host 'legacy-01' "
        "from hosts 'legacy-*')"
    ]


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"a": {"b": 1, "c": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": {"b": 1}}, {"a": "x"}, {"a": "x"}),
    ],
)
def test_the_merge_rule(
    base: dict[str, object], override: dict[str, object], merged: dict[str, object]
):
    assert merge(base, override) == merged


# --- the model's own invariants ---------------------------------------------------------


def test_a_health_check_has_exactly_one_kind():
    with pytest.raises(ValueError, match="exactly one of gitRemote, http"):
        HealthCheck(name="x")
    with pytest.raises(ValueError, match="got http, tcp"):
        HealthCheck(name="x", http=HttpCheck(url="http://a"), tcp=TcpCheck("a", 1))
    with pytest.raises(ValueError, match="got flake, classic"):
        Configuration(flake="a", classic="b")


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        ("02:00", "04:00", [(2, 0), (3, 59)], [(4, 0), (1, 59), (14, 0)]),
        ("22:00", "02:00", [(22, 0), (23, 59), (0, 0), (1, 59)], [(2, 0), (21, 59), (12, 0)]),
    ],
)
def test_a_reboot_window_may_span_midnight(
    start: str, end: str, inside: list[tuple[int, int]], outside: list[tuple[int, int]]
):
    window = RebootWindow(start, end)
    assert all(window.contains(h, m) for h, m in inside)
    assert not any(window.contains(h, m) for h, m in outside)


def test_for_host_takes_a_spec_as_well(overrides: NixOSDeployment):
    assert for_host(overrides.spec, "edge-01") == for_host(overrides, "edge-01").spec
