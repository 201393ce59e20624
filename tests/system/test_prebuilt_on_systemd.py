"""Prebuilt systems under real systemd: the container's own Nix and /nix/store fetch the
system CI built from the host's binary cache, over a real network link, and the agent
deploys it without evaluating anything.

The host plays CI: its Nix builds the next generation from the fleet repository (the same
flake and derivation the container would build: the same store path) with the real
`pullnix publish`, signs it with a key from `nix-store --generate-binary-cache-key` and
copies it into a `file://` cache that nginx serves on the host's end of a veth pair; the
container's end is its only way out. The deploy commit on main carries the lock and a
flake that throws when evaluated. The container trusts the cache as the NixOS module makes
a machine trust it: agent.toml's `[nix]` (the generation's, rendered by
nix/render-config.nix) and nix.conf's `substituters` and `trusted-public-keys`.

What is asserted is what a user sees (`pullnix status`, `pullnix history`, the system
links, the units), the guest's store before and after, and nginx's access log: the
narinfo and NAR requests that reached the cache from the container's address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.binarycache import Cache, KeyPair, generate_key, served_cache
from tests.support.prebuilt import narinfo_name
from tests.system.container import Container
from tests.system.fleet import LOCK
from tests.system.guestcli import (
    condition,
    history,
    ready_at,
    reconcile_now,
    resolve,
    restarts,
    status,
    wait_for,
)
from tests.system.hostlink import HostLink
from tests.system.install import (
    AGENT_UNIT,
    BOOT_DEFAULT,
    CONFIG_PATH,
    HELPER_UNIT,
    SYSTEM_PROFILE,
    TOPLEVEL,
    Installed,
    install_pullnix,
)
from tests.system.prebuilt import guest_derivations, in_guest_store, publish, trust_cache
from tests.system.rootfs import HOSTNAME

pytestmark = pytest.mark.system

SYSTEM_LINKS = ("/run/current-system", SYSTEM_PROFILE, BOOT_DEFAULT)
CI_KEY = "ci.pullnix.invalid-1"


@dataclass(frozen=True)
class Site:
    """The container with pullnix installed, trusting `key` and the cache at `url`."""

    box: Container
    link: HostLink
    cache: Cache
    key: KeyPair
    url: str
    installed: Installed


@pytest.fixture
def site(container: Container, pullnix_wheel: Path, tmp_path: Path) -> Iterator[Site]:
    key = generate_key(tmp_path / "keys", CI_KEY)
    with (
        HostLink(container) as link,
        served_cache(tmp_path / "binary-cache", host=link.host_address) as cache,
    ):
        (cache.root / "fleet").mkdir()
        (cache.root / "fleet" / "nix-cache-info").write_text("StoreDir: /nix/store\n")
        url = cache.url("fleet")
        trust_cache(container, [url], [key.public])
        installed = install_pullnix(
            container, pullnix_wheel, substituters=[url], trustedPublicKeys=[key.public]
        )
        ready_at(container, installed.revision)
        yield Site(container, link, cache, key, url, installed)


def _publish_and_deploy(site: Site, key: KeyPair, tmp_path: Path) -> tuple[str, str]:
    """CI builds generation 2 beside main and publishes it signed by `key`; main gets the
    deploy commit; (the deploy commit, the store path its lock names)."""
    fleet = site.installed.fleet
    source = fleet.commit("generation 2: built by CI", version="2", prebuilt=True, on_main=False)
    lock_file = tmp_path / "ci" / LOCK
    lock_file.parent.mkdir(exist_ok=True)
    report = publish(fleet, source, key, f"file://{site.cache.root}/fleet", lock_file)
    assert report["failed"] == [], report
    lock = json.loads(lock_file.read_text())
    assert lock["sourceRevision"] == source
    system: str = lock["hosts"][HOSTNAME]["storePath"]
    assert system.endswith(f"-nixos-system-{HOSTNAME}-2"), system
    deploy = fleet.deploy_lock(source, lock_file.read_text(), "deploy: generation 2, prebuilt")
    return deploy, system


def test_the_container_fetches_the_system_ci_built_from_the_hosts_cache_and_deploys_it(
    site: Site, tmp_path: Path
) -> None:
    box, installed = site.box, site.installed
    agent_toml = box.read_text(CONFIG_PATH)
    assert f'substituters = ["{site.url}"]' in agent_toml, agent_toml
    assert f'trusted_public_keys = ["{site.key.public}"]' in agent_toml, agent_toml
    helper_before = restarts(box, HELPER_UNIT)
    logged_before = len(site.cache.requests())

    deploy, system = _publish_and_deploy(site, site.key, tmp_path)
    assert not in_guest_store(box, system)  # the container's own store lacks it
    reconcile_now(box)
    doc = ready_at(box, deploy)

    assert doc["status"]["currentSystem"] == system
    for link in SYSTEM_LINKS:
        assert resolve(box, link) == system, link
    assert in_guest_store(box, system)
    entry = history(box)[0]
    assert (entry["revision"], entry["result"], entry["storePath"]) == (deploy, "Succeeded", system)
    assert {c["name"]: c["ok"] for c in entry["healthChecks"]} == {"git": True, "agent": True}
    # the generation's agent runs: activation restarted it into the fetched system's unit
    assert f"{system}/sw/bin/pullnix" in box.unit_property(AGENT_UNIT, "ExecStart")
    assert restarts(box, HELPER_UNIT) == helper_before
    # nothing was evaluated in the container: the deploy commit's flake throws when it is,
    # and no derivation of generation 2 is in the guest's store
    assert "evaluated in the container" not in box.journal(AGENT_UNIT)
    assert guest_derivations(box, f"nixos-system-{HOSTNAME}-2") == []

    # The cache saw the container fetch the system: its narinfo, then the NARs.
    fetched = site.cache.requests()[logged_before:]
    ok = [(path, size) for path, code, size in fetched if code == 200]
    assert f"/fleet/{narinfo_name(system)}" in [path for path, _ in ok], fetched
    nars = [(path, size) for path, size in ok if path.startswith("/fleet/nar/")]
    narinfos = [(path, size) for path, size in ok if path.endswith(".narinfo")]
    assert len(nars) == len(narinfos) >= 1, fetched  # one NAR for each path it lacked
    # only what the container lacked: the toplevel's "kernel" is generation 1's, already
    # in its store, so neither its narinfo nor its NAR was asked for
    kernel = resolve(box, f"{system}/kernel")
    assert kernel == resolve(box, f"{installed.system}/kernel")
    assert kernel.startswith("/nix/store/")
    assert narinfo_name(kernel) not in "".join(path for path, _, _ in fetched), fetched
    log = site.cache.access_log.read_text()
    assert log.count(f"{site.link.guest_address} - -") >= len(ok), log  # from the container
    print(
        f"\ncache {site.url}: {len(narinfos)} narinfo "
        f"({sum(s for _, s in narinfos)} bytes), {len(nars)} NAR "
        f"({sum(s for _, s in nars)} bytes) with status 200 for {system}"
    )

    # The container's own Nix would have built exactly this path from CI's commit.
    source = entry_source(site, deploy)
    flake = f"{installed.fleet.guest_url('/pullnix-test')}&rev={source}"
    evaluated = box.run(
        ["nix", "eval", "--raw", f"{flake}#nixosConfigurations.{HOSTNAME}.{TOPLEVEL}.outPath"],
        timeout=120,
    )
    assert evaluated.stdout.strip() == system


def entry_source(site: Site, deploy: str) -> str:
    """The commit CI built: the deploy commit's parent."""
    commit = site.installed.fleet.repo.revparse_single(deploy)
    return str(commit.parent_ids[0])


def test_a_system_signed_by_a_key_the_container_does_not_trust_is_not_activated(
    site: Site, tmp_path: Path
) -> None:
    box, installed = site.box, site.installed
    stranger = generate_key(tmp_path / "keys", "someone-else-1")
    logged_before = len(site.cache.requests())

    deploy, system = _publish_and_deploy(site, stranger, tmp_path)
    reconcile_now(box)

    def refused() -> dict[str, Any] | None:
        doc = status(box)
        ready = condition(doc, "Ready")
        seen = f"revision {deploy[:12]}:" in ready.get("message", "")
        return doc if seen and ready.get("reason") == "UntrustedSignature" else None

    doc = wait_for(refused, 120, "Ready False with UntrustedSignature", box)
    ready = condition(doc, "Ready")
    assert ready["status"] == "False"
    assert condition(doc, "Stalled")["reason"] == "UntrustedSignature", doc
    assert doc["status"]["source"]["revision"] == deploy
    # nothing was attempted: the running system is still generation 1
    assert doc["status"]["lastAttemptedRevision"] == installed.revision
    assert doc["status"]["lastAppliedRevision"] == installed.revision
    assert doc["status"]["currentSystem"] == installed.system
    assert (
        f"{system} from {site.url} is not signed by a key this machine trusts" in (ready["message"])
    ), ready
    assert CI_KEY in ready["message"], ready
    assert not in_guest_store(box, system)
    for link in SYSTEM_LINKS:
        assert resolve(box, link) == installed.system, link
    assert [e["revision"] for e in history(box)] == [installed.revision]
    assert f"{installed.system}/sw/bin/pullnix" in box.unit_property(AGENT_UNIT, "ExecStart")
    # the container asked for the narinfo, saw a signature it does not trust, and never
    # downloaded the NAR
    fetched = site.cache.requests()[logged_before:]
    assert (f"/fleet/{narinfo_name(system)}", 200) in [(p, c) for p, c, _ in fetched], fetched
    assert not [p for p, _, _ in fetched if p.startswith("/fleet/nar/")], fetched
