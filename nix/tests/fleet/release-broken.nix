# A release that is broken: its health probe fails, so pullnix must roll it back.
{ pkgs, ... }:
{
  environment.etc."fleet-release".text = "broken";
  systemd.services.fleet-health = {
    description = "fleet health probe (pullnix VM test)";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${pkgs.coreutils}/bin/false";
    };
  };
}
