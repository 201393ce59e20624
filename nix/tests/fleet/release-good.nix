# A release that works: its health probe passes.
{ pkgs, ... }:
{
  environment.etc."fleet-release".text = "good";
  systemd.services.fleet-health = {
    description = "fleet health probe (pullnix VM test)";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${pkgs.coreutils}/bin/true";
    };
  };
}
