# The NixOS VM test (the flake's `checks.<system>.vm`): two machines, a git
# server and an agent that follows a fleet repository on it.
#
#   1. The agent boots with pullnix: the helper's profile is installed on
#      first boot and the helper runs from it.
#   2. A good commit converges: built on the agent from the repository,
#      activated on trial, verified, committed to the system profile, and
#      the helper was not restarted by the activation.
#   3. A broken commit (its health probe fails) is rolled back: the good
#      generation is running and still the profile's.
#
# The agent builds a real NixOS system inside the VM, offline: the VM carries
# the build dependencies of its own system (system.includeBuildDependencies)
# and nixpkgs' and pullnix's sources, and the fleet's configuration is the
# VM's own (its generated hardware configuration, the test instrumentation,
# the same network and pullnix settings) plus one release module.
#
# Needs KVM and a few GB of disk; run with `nix build .#checks.x86_64-linux.vm`
# (or `nix flake check`).
{ pkgs, self }:
let
  system = pkgs.stdenv.hostPlatform.system;
  nixpkgsSource = "${pkgs.path}";
  pullnixSource = "${self}";

  fleetFlake = pkgs.writeText "fleet-flake.nix" ''
    {
      description = "pullnix VM test: the fleet repository the agent follows";
      inputs.nixpkgs.url = "path:${nixpkgsSource}";
      inputs.pullnix.url = "path:${pullnixSource}";
      inputs.pullnix.inputs.nixpkgs.follows = "nixpkgs";
      outputs = { self, nixpkgs, pullnix }: {
        nixosConfigurations.agent = nixpkgs.lib.nixosSystem {
          system = "${system}";
          modules = [
            pullnix.nixosModules.default
            "''${nixpkgs}/nixos/modules/testing/test-instrumentation.nix"
            ./hardware-configuration.nix
            ./machine.nix
            ./common.nix
            ./release.nix
            {
              system.configurationRevision = self.rev or "dirty";
              networking.hostName = "agent";
              # The VM boots its kernel directly; `boot` only records the default.
              boot.loader.grub.enable = false;
            }
          ];
        };
      };
    }
  '';
in
pkgs.testers.runNixOSTest {
  name = "pullnix";
  meta.timeout = 3600;

  nodes.server = { pkgs, ... }: {
    services.gitDaemon = {
      enable = true;
      basePath = "/srv/git";
      exportAll = true;
      # The test pushes over git:// too; a real fleet would use ssh.
      options = "--enable=receive-pack";
    };
    systemd.tmpfiles.rules = [ "d /srv/git 0755 git git - -" ];
    networking.firewall.allowedTCPPorts = [ 9418 ];
    environment.systemPackages = [ pkgs.git ];
  };

  nodes.agent = { pkgs, ... }: {
    imports = [ self.nixosModules.default ./fleet/common.nix ];
    # Everything needed to build a variant of this system without a cache.
    system.includeBuildDependencies = true;
    virtualisation = {
      cores = 2;
      memorySize = 4096;
      diskSize = 8192;
      writableStoreUseTmpfs = false;
      additionalPaths = [ nixpkgsSource pullnixSource ];
    };
    environment.systemPackages = [ pkgs.git ];
  };

  testScript = { nodes, ... }:
    let
      agentConfig = nodes.agent;
      # What the VM is beyond its hardware: addresses, host names, state version.
      machineNix = pkgs.writeText "machine.nix" ''
        { lib, ... }:
        {
          networking.useDHCP = false;
          networking.usePredictableInterfaceNames = false;
          networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
            { address = "${agentConfig.networking.primaryIPAddress}"; prefixLength = 24; }
          ];
          networking.extraHosts = "${nodes.server.networking.primaryIPAddress} server";
          networking.firewall.enable = false;
          system.stateVersion = "${agentConfig.system.stateVersion}";
        }
      '';
    in
    ''
      import json
      import time
      from typing import Any, Callable, Optional


      def wait_for(what: str, check: Callable[[], bool], timeout: float = 1800) -> None:
          deadline = time.monotonic() + timeout
          while not check():
              if time.monotonic() > deadline:
                  agent.succeed("journalctl -u pullnix-agent -u pullnix-helper --no-pager | tail -n 200 >&2")
                  raise Exception(f"timed out waiting for {what}")
              time.sleep(5)


      def cli_json(command: str) -> Any:
          _, out = agent.execute(f"pullnix {command} --json")
          try:
              return json.loads(out)
          except ValueError:
              return None


      def applied_revision() -> Optional[str]:
          doc = cli_json("status")
          if not isinstance(doc, dict):
              return None
          return doc.get("status", {}).get("lastAppliedRevision")


      def history_result(revision: str) -> Optional[str]:
          doc = cli_json("history")
          if isinstance(doc, dict):
              entries = doc.get("history", doc.get("status", {}).get("history", []))
          else:
              entries = doc or []
          for entry in entries:
              if entry.get("revision") == revision:
                  return entry.get("result")
          return None


      def main_pid(unit: str) -> str:
          return agent.succeed(f"systemctl show --property MainPID --value {unit}").strip()


      def link(path: str) -> str:
          return agent.succeed(f"readlink -f {path}").strip()


      def commit_and_push(release: str, message: str) -> str:
          agent.succeed(
              f"cp --no-preserve=mode {release} /root/fleet/release.nix",
              "git -C /root/fleet add -A",
              f"git -C /root/fleet commit -q -m '{message}'",
              "git -C /root/fleet push -q origin HEAD:main",
          )
          return agent.succeed("git -C /root/fleet rev-parse HEAD").strip()


      start_all()

      server.wait_for_unit("git-daemon.service")
      server.wait_for_open_port(9418)
      server.succeed("runuser -u git -- git init -q --bare --initial-branch=main /srv/git/fleet.git")

      agent.wait_for_unit("multi-user.target")

      with subtest("the helper runs from its own profile, installed on first boot"):
          agent.wait_for_unit("pullnix-helper.service")
          agent.succeed("test -x /nix/var/nix/profiles/pullnix/helper/bin/pullnix-helper")
          assert link("/nix/var/nix/profiles/pullnix/helper") == link("/etc/pullnix/helper")
          agent.fail("grep /nix/store /etc/systemd/system/pullnix-helper.service")
          agent.succeed("test -S /run/pullnix/helper.sock")
      helper_pid = main_pid("pullnix-helper.service")

      with subtest("the fleet repository: this machine, the shared settings, a good release"):
          agent.succeed(
              "nixos-generate-config --dir /root/fleet",
              "rm /root/fleet/configuration.nix",
              "cp --no-preserve=mode ${fleetFlake} /root/fleet/flake.nix",
              "cp --no-preserve=mode ${machineNix} /root/fleet/machine.nix",
              "cp --no-preserve=mode ${./fleet/common.nix} /root/fleet/common.nix",
              "cp --no-preserve=mode ${./fleet/pullnix.yaml} /root/fleet/pullnix.yaml",
              "cp --no-preserve=mode ${./fleet/release-good.nix} /root/fleet/release.nix",
              "git -C /root/fleet init -q --initial-branch=main",
              "git -C /root/fleet config user.name 'pullnix test'",
              "git -C /root/fleet config user.email test@example.org",
              "git -C /root/fleet remote add origin git://server/fleet.git",
              "git -C /root/fleet add -A",
              "cd /root/fleet && nix flake lock",
              "git -C /root/fleet add -A",
              "git -C /root/fleet commit -q -m 'good release'",
              "git -C /root/fleet push -q origin HEAD:main",
          )
          good_revision = agent.succeed("git -C /root/fleet rev-parse HEAD").strip()
          # The agent has been failing on an empty repository; skip its back-off.
          agent.succeed("systemctl restart pullnix-agent.service")

      with subtest("a good commit converges: built, tried, verified, committed"):
          wait_for("the good release to be applied", lambda: applied_revision() == good_revision)
          agent.succeed("test \"$(cat /etc/fleet-release)\" = good")
          good_system = link("/run/current-system")
          assert link("/nix/var/nix/profiles/system") == good_system, "not committed"
          revision = agent.succeed("nixos-version --configuration-revision").strip()
          assert revision == good_revision, f"the system records {revision}"
          # The same commit as a file of the toplevel, for the downgrade check.
          agent.succeed(f"test \"$(cat /run/current-system/configuration-revision)\" = {good_revision}")
          # The helper's state: root's, readable by the agent's group only.
          agent.succeed("test \"$(stat -c '%a %U %G' /nix/var/pullnix/helper)\" = '2750 root pullnix'")
          agent.succeed("runuser -u pullnix -- cat /nix/var/pullnix/helper/generations.json")
          agent.wait_for_unit("pullnix-agent.service")
          assert main_pid("pullnix-helper.service") == helper_pid, "activation restarted the helper"

      with subtest("a broken commit is rolled back to the good generation"):
          broken_revision = commit_and_push("${./fleet/release-broken.nix}", "broken release")
          wait_for("the broken release to be rolled back",
                   lambda: history_result(broken_revision) == "RolledBack")
          agent.succeed("test \"$(cat /etc/fleet-release)\" = good")
          assert link("/run/current-system") == good_system, "the broken system still runs"
          assert link("/nix/var/nix/profiles/system") == good_system, "the broken system was committed"
          assert applied_revision() == good_revision
          assert main_pid("pullnix-helper.service") == helper_pid, "activation restarted the helper"
    '';
}
