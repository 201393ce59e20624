# edge-01: a small box at a branch office.
{ ... }:
{
  boot.loader.grub.device = "/dev/vda";
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  time.timeZone = "Europe/Berlin";   # the reboot window in pullnix.yaml is local time
}
