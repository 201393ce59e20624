"""The driver builds a host's system with real Nix from a bare mirror at an exact commit, and
says clearly what went wrong when it cannot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.core.errors import TerminalError, TransientError
from reconciler.nix.build import (
    BuildSettings,
    BuiltSystem,
    InvalidAttribute,
    build_classic,
    build_flake,
    flake_installable,
    held_roots,
    release,
    toplevel_attr,
)
from reconciler.nix.errors import (
    BuildFailed,
    ConfigurationMissing,
    EvaluationError,
    FlakeAttributeMissing,
    NixMissing,
    NixpkgsMissing,
    NixTimeout,
    NotASystem,
    RevisionNotInMirror,
)
from tests.support.nixfixture import (
    BUILD_FAILURE_TEXT,
    EVAL_ERROR_TEXT,
    FleetRepo,
    Sandbox,
    commit_fleet,
    init_fleet_repo,
)

pytestmark = pytest.mark.nix
TEMPLATE = "nixosConfigurations.{host}"


@pytest.fixture
def fleet(tmp_path: Path, sandbox: Sandbox) -> FleetRepo:
    return init_fleet_repo(tmp_path, sandbox, hosts=("edge-01", "edge-02"))


@pytest.fixture
def settings(sandbox: Sandbox) -> BuildSettings:
    return BuildSettings(gcroots_dir=sandbox.gcroots, timeout=120)


def build(
    fleet: FleetRepo,
    sha: str,
    settings: BuildSettings,
    host: str = "edge-01",
    lines: list[str] | None = None,
) -> BuiltSystem:
    return build_flake(
        fleet.bare,
        "main",
        sha,
        TEMPLATE,
        host,
        settings,
        on_line=None if lines is None else lines.append,
    )


def test_builds_the_pinned_older_commit_not_the_branch_head(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    old = fleet.sha
    new = commit_fleet(fleet, version="2")
    commit_fleet(fleet, version="3")
    built_old = build(fleet, old, settings)
    built_new = build(fleet, new, settings)
    assert Path(built_old.store_path, "nixos-version").read_text() == "1"
    assert Path(built_new.store_path, "nixos-version").read_text() == "2"
    assert built_old.revision == old
    assert f"rev={old}" in built_old.installable


def test_the_built_path_is_held_by_a_gc_root_until_released(
    fleet: FleetRepo, settings: BuildSettings, sandbox: Sandbox
) -> None:
    built = build(fleet, fleet.sha, settings)
    assert built.gc_root.parent == sandbox.gcroots
    assert os.readlink(built.gc_root) == built.store_path
    assert held_roots(settings) == {built.gc_root: built.store_path}
    release(built)
    assert not built.gc_root.exists()
    assert held_roots(settings) == {}
    release(built)  # releasing twice is harmless


def test_nix_log_lines_reach_the_callback_as_they_arrive(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    lines: list[str] = []
    build(fleet, commit_fleet(fleet, build_seconds=0, version="streamed"), settings, lines=lines)
    assert any("building '/nix/store/" in line for line in lines)


def test_a_failing_build_reports_the_fixture_failure_in_at_most_50_lines(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    sha = commit_fleet(fleet, fail_build=True)
    lines: list[str] = []
    with pytest.raises(BuildFailed) as caught:
        build(fleet, sha, settings, lines=lines)
    message = caught.value.message
    assert BUILD_FAILURE_TEXT in message
    assert len(message.splitlines()) <= 50
    assert "nix log /nix/store/" in message
    assert caught.value.reason == "BuildFailed"
    assert isinstance(caught.value, TerminalError)
    assert len(lines) > 50  # the whole log was streamed, only the tail kept
    assert not os.listdir(settings.gcroots_dir)


def test_a_missing_host_attribute_is_named(fleet: FleetRepo, settings: BuildSettings) -> None:
    with pytest.raises(FlakeAttributeMissing) as caught:
        build(fleet, fleet.sha, settings, host="edge-99")
    assert "nixosConfigurations.edge-99.config.system.build.toplevel" in caught.value.message
    assert "spec.configuration.flake" in caught.value.message
    assert caught.value.reason == "FlakeAttributeMissing"


def test_an_evaluation_error_carries_nix_s_message(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    sha = commit_fleet(fleet, eval_error="undefined variable 'foo'")
    with pytest.raises(EvaluationError) as caught:
        build(fleet, sha, settings)
    assert EVAL_ERROR_TEXT in caught.value.message
    assert caught.value.reason == "EvaluationError"
    assert len(caught.value.message.splitlines()) <= 50


def test_a_result_without_switch_to_configuration_is_not_a_system(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    sha = commit_fleet(fleet, not_a_system=True)
    with pytest.raises(NotASystem, match="bin/switch-to-configuration") as caught:
        build(fleet, sha, settings)
    assert caught.value.reason == "NotASystem"
    assert held_roots(settings) == {}


def test_a_commit_missing_from_the_mirror_is_transient(
    fleet: FleetRepo, settings: BuildSettings
) -> None:
    with pytest.raises(RevisionNotInMirror) as caught:
        build(fleet, "0" * 40, settings)
    assert isinstance(caught.value, TransientError)


def test_a_build_over_its_timeout_is_stopped_and_transient(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    sha = commit_fleet(fleet, build_seconds=30)
    with pytest.raises(NixTimeout, match="did not finish within 1s") as caught:
        build(fleet, sha, BuildSettings(gcroots_dir=sandbox.gcroots, timeout=1))
    assert isinstance(caught.value, TransientError)


def test_nix_missing_from_path_says_to_install_nix(
    fleet: FleetRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    settings = BuildSettings(gcroots_dir=sandbox.gcroots, search_path=str(empty))
    with pytest.raises(NixMissing, match="install it") as caught:
        build(fleet, fleet.sha, settings)
    assert caught.value.reason == "NixMissing"
    assert str(empty) in caught.value.message


def test_classic_configuration_without_nixpkgs_fails_clearly(
    sandbox: Sandbox, settings: BuildSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = tmp_path / "export"
    (exported / "hosts" / "edge-01").mkdir(parents=True)
    (exported / "hosts" / "edge-01" / "configuration.nix").write_text("{ ... }: { }\n")
    monkeypatch.setenv("NIX_PATH", "")
    with pytest.raises(NixpkgsMissing, match="<nixpkgs>") as caught:
        build_classic(
            exported, "hosts/{host}/configuration.nix", "edge-01", settings, revision="a" * 40
        )
    assert caught.value.reason == "NixpkgsMissing"
    with pytest.raises(ConfigurationMissing, match=r"hosts/edge-02/configuration\.nix"):
        build_classic(exported, "hosts/{host}/configuration.nix", "edge-02", settings)
    with pytest.raises(InvalidAttribute):
        build_classic(exported, "../{host}.nix", "edge-01", settings)


def test_installable_is_the_exact_commit_and_host_toplevel(tmp_path: Path) -> None:
    sha = "ab" * 20
    assert flake_installable(tmp_path, "main", sha, TEMPLATE, "edge-01") == (
        f"git+file://{tmp_path}?ref=main&rev={sha}"
        "#nixosConfigurations.edge-01.config.system.build.toplevel"
    )
    assert toplevel_attr(TEMPLATE, "edge.example.org").startswith(
        'nixosConfigurations."edge.example.org".'
    )
    for bad_template, host in ((TEMPLATE, "a b"), ("x#y.{host}", "h"), ("{hostname}", "h")):
        with pytest.raises(InvalidAttribute):
            toplevel_attr(bad_template, host)
    with pytest.raises(ValueError, match="full commit"):
        flake_installable(tmp_path, "main", "abc", TEMPLATE, "h")


def test_host_names_with_dots_build(tmp_path: Path, sandbox: Sandbox) -> None:
    fleet = init_fleet_repo(tmp_path / "dots", sandbox, hosts=("edge.example.org",))
    built = build_flake(
        fleet.bare,
        "main",
        fleet.sha,
        TEMPLATE,
        "edge.example.org",
        BuildSettings(gcroots_dir=sandbox.gcroots),
    )
    assert built.store_path.endswith("-nixos-system-edge.example.org-1")


def test_nix_is_on_path_here() -> None:
    assert shutil.which("nix") is not None, "these tests need real Nix (Debian: nix-bin)"


# A FAKE `<nixpkgs/nixos>`, not NixOS: it evaluates `<nixos-config>` (a function of `{ ... }`
# returning `{ name; version; salt; }`) and builds, with /bin/sh, a toplevel that has just a
# `bin/switch-to-configuration`. Enough to show the classic path end to end without nixpkgs.
# The salt makes each run build afresh, so Nix's build log is there to stream.
FAKE_NIXOS = r"""
{ configuration ? import <nixos-config> }:
let config = configuration { }; in
{
  system = derivation {
    name = "FAKE-nixos-system-${config.name}-${config.version}";
    system = "x86_64-linux";
    inherit (config) salt;
    builder = "/bin/sh";
    args = [ "-c" ''
      echo "FAKE nixos: building ${config.name}"
      /bin/mkdir -p $out/bin
      printf '#!/bin/sh\necho "FAKE switch-to-configuration $1"\n' \
        > $out/bin/switch-to-configuration
      /bin/chmod +x $out/bin/switch-to-configuration
      echo ${config.version} > $out/nixos-version
    '' ];
  };
}
"""


def test_a_classic_configuration_builds_with_nixpkgs_nixos_from_nix_path(
    settings: BuildSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nixpkgs = tmp_path / "fake-nixpkgs"
    (fake_nixpkgs / "nixos").mkdir(parents=True)
    (fake_nixpkgs / "nixos" / "default.nix").write_text(FAKE_NIXOS)
    exported = tmp_path / "export"
    for host, version in (("edge-01", "7"), ("edge-02", "8")):
        (exported / "hosts" / host).mkdir(parents=True)
        (exported / "hosts" / host / "configuration.nix").write_text(
            f'{{ ... }}: {{ name = "{host}"; version = "{version}"; '
            f'salt = "{os.urandom(8).hex()}"; }}\n'
        )
    monkeypatch.setenv("NIX_PATH", f"nixpkgs={fake_nixpkgs}")
    lines: list[str] = []
    built = build_classic(
        exported,
        "hosts/{host}/configuration.nix",
        "edge-02",
        settings,
        revision="c" * 40,
        on_line=lines.append,
    )
    assert built.store_path.startswith("/nix/store/")
    assert built.store_path.endswith("-FAKE-nixos-system-edge-02-8")
    assert Path(built.store_path, "nixos-version").read_text() == "8\n"
    assert built.revision == "c" * 40
    assert built.installable == (
        f"nixos-config={(exported / 'hosts/edge-02/configuration.nix').resolve()}"
    )
    assert held_roots(settings) == {built.gc_root: built.store_path}
    assert any("FAKE nixos: building edge-02" in line for line in lines), lines
    release(built)
    assert held_roots(settings) == {}
