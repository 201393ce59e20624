# The fixed paths of a pullnix machine, in one place (pure: no nixpkgs).
#
# Owns: where the module puts the machine config, the helper's profile and
# sockets. render-config.nix writes them into agent.toml, units.nix into the
# systemd units; neither spells a path itself.
# Must not: contain store paths (the helper's unit is built from these and
# must read the same in every generation).
{
  # The machine config both processes read (written by the module).
  configFile = "/etc/pullnix/agent.toml";
  # The helper store path this generation wants; the agent compares it with
  # the helper profile and asks the helper to `upgrade` when they differ.
  wantedHelper = "/etc/pullnix/helper";

  helperProfile = "/nix/var/nix/profiles/pullnix/helper";
  helperProfileDir = "/nix/var/nix/profiles/pullnix";
  helperStateDir = "/nix/var/pullnix/helper";
  helperSocket = "/run/pullnix/helper.sock";

  # Shared by both processes; created by tmpfiles, owned by root. The agent
  # gets its own subdirectory (RuntimeDirectory=pullnix/agent), so stopping
  # the agent never removes the helper's socket.
  runtimeDir = "/run/pullnix";
  agentRuntimeDir = "pullnix/agent";
  agentSocket = "/run/pullnix/agent/agent.sock";
  agentCacheDir = "pullnix";

  # NixOS's CA bundle (security.pki), a fixed path outside the store.
  caBundle = "/etc/ssl/certs/ca-certificates.crt";

  systemProfile = "/nix/var/nix/profiles/system";
  currentSystem = "/run/current-system";
  bootedSystem = "/run/booted-system";
}
