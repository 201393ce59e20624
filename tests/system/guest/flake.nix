# The system tier's generations: a toplevel laid out like NixOS's, built by the real Nix
# inside the test container from the fleet repository the agent follows. Not NixOS: no
# nixpkgs, no inputs, `/bin/sh` builds it. Its pullnix parts are the NixOS module's own:
# the units are what nix/units.nix defines, rendered to text by unit-text.nix as NixOS
# renders them, and agent.toml is what nix/render-config.nix writes, both evaluated here
# for the container's paths (the module's nix/ files travel in every commit).
#
#   bin/switch-to-configuration     tests/system/guest/switch-to-configuration (users,
#                                   tmpfiles, /etc/pullnix, the units; daemon-reload;
#                                   restarts what changed)
#   etc/systemd/system/*.service    pullnix-helper, pullnix-helper-install, pullnix-agent
#                                   (nix/units.nix), the git server's (listening on the
#                                   gitListen knob)
#   etc/pullnix/agent.toml          nix/render-config.nix (knobs agentUid, substituters,
#                                   trustedPublicKeys)
#   etc/pullnix/helper              the helper this generation wants (knob helper)
#   etc/tmpfiles.d/pullnix.conf     nix/units.nix's tmpfiles rules
#   etc/pullnix-users               "name uid group": the pullnix system user
#   sw/bin/pullnix                  execs the container's pullnix venv; with the knob
#                                   agent = "broken" it exits 1 instead: an agent that
#                                   cannot start; with agent = "walled-off" the agent's
#                                   unit cannot reach the helper's socket: it starts but
#                                   can never confirm
#   sw/bin/*                        the container's /usr/bin, as NixOS's system path
#   kernel                          -> linux-<kernel knob>, a store path of its own, so a
#                                   generation with another "kernel" needs a reboot
#   nixos-version                   the version knob
#
# Knobs come from knobs.json in the same commit (tests/system/fleet.py writes them).
{
  description = "pullnix system tier: generations of the test container (not NixOS)";

  outputs = { self }:
    let
      knobs = builtins.fromJSON (builtins.readFile ./knobs.json);
      out = builtins.placeholder "out";
      fill = file: vars: builtins.replaceStrings
        (map (name: "@${name}@") (builtins.attrNames vars))
        (builtins.attrValues vars)
        (builtins.readFile file);
      render = import ./unit-text.nix;
      pullnix =
        if knobs.agent == "broken" then ''
          #!/bin/sh
          echo "pullnix of generation ${knobs.version}: broken on purpose (knob agent=broken)" >&2
          exit 1
        ''
        else ''
          #!/bin/sh
          exec /opt/pullnix/venv/bin/pullnix "$@"
        '';

      # services.pullnix as a fleet would set it for this machine.
      defaults = import ./nix/defaults.nix;
      options = defaults // {
        host = knobs.host;
        repository = defaults.repository // { urls = [ "git://127.0.0.1:9418/fleet.git" ]; };
        interval = "30s";
        jitter = "1s";
        agentUid = knobs.agentUid;
        binaryCache = {
          substituters = knobs.substituters;
          trustedPublicKeys = knobs.trustedPublicKeys;
        };
      };
      agentToml = import ./nix/render-config.nix options;
      units = import ./nix/units.nix {
        # This generation's `pullnix` (sw/bin/pullnix), so every generation's agent unit
        # differs and activation restarts the agent, as a new package would on NixOS.
        agentPackage = "${out}/sw";
        helperPackage = knobs.helper;
        nixPackage = "/usr"; # Debian's nix-bin
        agentPath = [ "/usr" ]; # nix, git, ssh
        configFile = "${out}/etc/pullnix/agent.toml";
        inherit (options) stateDir otlp;
      };
      agent = units.agent // {
        serviceConfig = units.agent.serviceConfig
          // (if knobs.agent == "walled-off"
              then { InaccessiblePaths = "/run/pullnix/helper.sock"; } else { });
      };
      tmpfiles = builtins.concatStringsSep "\n" units.tmpfiles + "\n";
      kernel = derivation {
        name = "linux-${knobs.kernel}";
        system = knobs.system;
        builder = "/bin/sh";
        args = [ "-c" "echo ${knobs.kernel} > $out" ];
      };
      toplevel = derivation {
        name = "nixos-system-${knobs.host}-${knobs.version}";
        system = knobs.system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        version = knobs.version;
        switch = fill ./switch-to-configuration {
          switchDelay = toString knobs.switchDelay;
          switchOutput = toString knobs.switchOutput;
        };
        inherit pullnix agentToml tmpfiles kernel;
        helper = knobs.helper;
        users = "pullnix ${toString knobs.agentUid} pullnix\n";
        helperUnit = render units.helper;
        installUnit = render units.helperInstall;
        agentUnit = render agent;
        gitUnit = fill ./units/fleet-git-daemon.service { listen = knobs.gitListen; };
        args = [ "-c" ''
          set -e
          units="$out/etc/systemd/system"
          mkdir -p "$out/bin" "$out/sw/bin" "$units" "$out/etc/pullnix" "$out/etc/tmpfiles.d"
          printf '%s' "$version" > "$out/nixos-version"
          ln -s "$kernel" "$out/kernel"
          printf '%s' "$switch" > "$out/bin/switch-to-configuration"
          printf '%s' "$pullnix" > "$out/sw/bin/pullnix"
          chmod +x "$out/bin/switch-to-configuration" "$out/sw/bin/pullnix"
          # The system path: every command of the container's /usr/bin, as NixOS's
          # sw/bin holds every installed package's (the helper's PATH starts there).
          for tool in /usr/bin/*; do
            name="''${tool##*/}"
            [ -e "$out/sw/bin/$name" ] || ln -s "$tool" "$out/sw/bin/$name"
          done
          printf '%s' "$agentToml" > "$out/etc/pullnix/agent.toml"
          ln -s "$helper" "$out/etc/pullnix/helper"
          printf '%s' "$tmpfiles" > "$out/etc/tmpfiles.d/pullnix.conf"
          printf '%s' "$users" > "$out/etc/pullnix-users"
          printf '%s' "$helperUnit" > "$units/pullnix-helper.service"
          printf '%s' "$installUnit" > "$units/pullnix-helper-install.service"
          printf '%s' "$agentUnit" > "$units/pullnix-agent.service"
          printf '%s' "$gitUnit" > "$units/fleet-git-daemon.service"
        '' ];
      };
    in
    {
      nixosConfigurations.${knobs.host}.config.system.build.toplevel = toplevel;
    };
}
