# A NixOS `systemd.services.<name>` value (what nix/units.nix defines) -> the unit file
# text NixOS writes for it, for the system tier, which has no nixpkgs. Pure Nix.
#
# Follows nixos/lib/systemd-lib.nix (serviceToUnit, attrsToSection) for the attributes
# nix/units.nix uses: description, wants/after/before, restartTriggers
# (X-Restart-Triggers), startLimitIntervalSec, unitConfig -> [Unit]; environment (one
# JSON-quoted Environment= line each, null dropped), `path` (PATH of each entry's bin
# and sbin), restartIfChanged/stopIfChanged (X-RestartIfChanged=false,
# X-StopIfChanged=false), serviceConfig -> [Service]; a list value is one line per
# element, a bool true/false.
# One difference, on purpose: NixOS links wantedBy into .wants directories itself; here
# it becomes [Install] WantedBy=, so the fake switch-to-configuration can
# `systemctl enable` the unit.
svc:
let
  inherit (builtins) attrNames concatStringsSep filter isBool isList toJSON;

  value = v: if isBool v then (if v then "true" else "false") else toString v;
  section = attrs: concatStringsSep "" (map
    (k:
      let v = attrs.${k}; in
      if isList v then concatStringsSep "" (map (x: "${k}=${value x}\n") v)
      else "${k}=${value v}\n")
    (filter (k: attrs.${k} != null) (attrNames attrs)));
  joined = list: concatStringsSep " " list;
  get = name: default: svc.${name} or default;

  unit =
    { Description = get "description" null; }
    // (if get "wants" [ ] == [ ] then { } else { Wants = joined svc.wants; })
    // (if get "after" [ ] == [ ] then { } else { After = joined svc.after; })
    // (if get "before" [ ] == [ ] then { } else { Before = joined svc.before; })
    // (if get "restartTriggers" [ ] == [ ] then { } else {
      X-Restart-Triggers = joined (map toString svc.restartTriggers);
    })
    // (if svc ? startLimitIntervalSec then { StartLimitIntervalSec = svc.startLimitIntervalSec; } else { })
    // get "unitConfig" { };

  pathEnv =
    if get "path" [ ] == [ ] then { }
    else { PATH = concatStringsSep ":" (map (p: "${p}/bin") svc.path ++ map (p: "${p}/sbin") svc.path); };
  environment = pathEnv // get "environment" { };
  environmentLines = concatStringsSep "" (map
    (k: "Environment=${toJSON "${k}=${environment.${k}}"}\n")
    (filter (k: environment.${k} != null) (attrNames environment)));
  changeLines =
    (if get "restartIfChanged" true then "" else "X-RestartIfChanged=false\n")
    + (if get "stopIfChanged" true then "" else "X-StopIfChanged=false\n");
in
''
  [Unit]
  ${section unit}
  [Service]
  ${environmentLines}${changeLines}${section (get "serviceConfig" { })}
  [Install]
  ${section { WantedBy = get "wantedBy" [ ]; }}''
