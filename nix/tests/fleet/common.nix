# The part of the VM test's agent machine that its fleet repository repeats:
# the test's agent VM is built with it, and it is committed into the fleet
# repository the VM follows, so the generations pullnix deploys keep
# following the same repository with the same settings.
{ lib, ... }:
{
  services.pullnix = {
    enable = true;
    repository.urls = [ "git://server/fleet.git" ];
    interval = "10s";
    jitter = "1s";
  };

  # No network beyond the test's own: nothing to substitute, no registry.
  nix.settings = {
    experimental-features = [ "nix-command" "flakes" ];
    substituters = lib.mkForce [ ];
    flake-registry = "";
    connect-timeout = 1;
  };

  documentation.enable = false;
}
