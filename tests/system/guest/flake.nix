# The system tier's generations: a toplevel laid out like NixOS's, built by the real Nix
# inside the test container from the fleet repository the agent follows. Not NixOS: no
# nixpkgs, no inputs, `/bin/sh` builds it. What it holds:
#
#   bin/switch-to-configuration     tests/system/guest/switch-to-configuration (writes the
#                                   generation's units, daemon-reload, restarts what changed)
#   etc/systemd/system/*.service    the helper's unit (verbatim: never restarted), the
#                                   agent's (runs this toplevel's sw/bin/pullnix), the git
#                                   server's (listening on the gitListen knob)
#   sw/bin/pullnix                  execs the container's pullnix venv; with the knob
#                                   agent = "broken" it exits 1 instead: an agent that
#                                   cannot start; with agent = "walled-off" the agent's
#                                   unit cannot reach the helper's socket: it starts but
#                                   can never confirm
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
      toplevel = derivation {
        name = "nixos-system-${knobs.host}-${knobs.version}";
        system = knobs.system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        version = knobs.version;
        switch = builtins.readFile ./switch-to-configuration;
        inherit pullnix;
        helperUnit = builtins.readFile ./units/pullnix-helper.service;
        agentUnit = fill ./units/pullnix-agent.service {
          toplevel = out;
          version = knobs.version;
          sandboxing = if knobs.agent == "walled-off"
            then "InaccessiblePaths=/run/pullnix/helper.sock" else "";
        };
        gitUnit = fill ./units/fleet-git-daemon.service { listen = knobs.gitListen; };
        args = [ "-c" ''
          set -e
          units="$out/etc/systemd/system"
          mkdir -p "$out/bin" "$out/sw/bin" "$units"
          printf '%s' "$version" > "$out/nixos-version"
          printf '%s' "$switch" > "$out/bin/switch-to-configuration"
          printf '%s' "$pullnix" > "$out/sw/bin/pullnix"
          chmod +x "$out/bin/switch-to-configuration" "$out/sw/bin/pullnix"
          printf '%s' "$helperUnit" > "$units/pullnix-helper.service"
          printf '%s' "$agentUnit" > "$units/pullnix-agent.service"
          printf '%s' "$gitUnit" > "$units/fleet-git-daemon.service"
        '' ];
      };
    in
    {
      nixosConfigurations.${knobs.host}.config.system.build.toplevel = toplevel;
    };
}
