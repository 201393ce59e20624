# What every machine of the fleet runs; the health checks in pullnix.yaml test it.
{ pkgs, ... }:
{
  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
  };

  # The "web" health check GETs http://127.0.0.1/healthz and expects "ok".
  services.nginx = {
    enable = true;
    virtualHosts.localhost.locations."= /healthz".return = "200 ok";
  };
  networking.firewall.allowedTCPPorts = [ 22 80 ];

  # The pullnix agent and helper come from pullnix's own flake: add it as an
  # input and import its NixOS module here, pointing it at this repository.

  environment.systemPackages = [ pkgs.git ];
  system.stateVersion = "24.05";
}
