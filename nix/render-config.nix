# services.pullnix option values -> the text of /etc/pullnix/agent.toml.
#
# Pure Nix (builtins only, no nixpkgs), so the tests evaluate it with real Nix
# on a machine without nixpkgs and load the result with the agent's own
# loader (reconciler/common/config.py).
#
# Owns: which agent.toml key each option becomes, the order they are written
# in, and checking `extraSettings` against the keys agent.toml has, so a typo
# fails the build instead of stopping the agent on the machine.
# Must not: invent keys the loader does not accept, or put secrets in the
# file (secret *files* are named by path; their contents never pass here).
#
# Takes the whole option set (module.nix passes `config.services.pullnix`);
# every attribute read below must be present, `host` as the name (module.nix
# resolves a null through wiring.nix).
cfg:
let
  inherit (builtins) attrNames concatStringsSep elem filter isAttrs;

  toml = import ./toml.nix;
  paths = import ./paths.nix;

  # agent.toml's keys, in the order the file is written (and the order
  # reconciler/common/config.py declares them). The test checks this list
  # against the loader's dataclasses.
  order = {
    "" = [ "host" "state_dir" "source" "system" "helper" "agent" "triggers" "telemetry" "nix" "fleet" ];
    source = [
      "urls"
      "branch"
      "spec_path"
      "ssh_key_file"
      "known_hosts_file"
      "token_file"
      "allowed_signers_file"
      "gpg_keyring"
      "allow_downgrade"
      "max_age"
    ];
    system = [ "profile" "current_system" "booted_system" "keep_generations" ];
    helper = [ "socket" "state_dir" "profile" "agent_uids" ];
    agent = [ "socket" ];
    triggers = [ "interval" "jitter" "webhook_listen" "webhook_secret_file" ];
    telemetry = [ "metrics_listen" "log_format" "trace_url" ];
    nix = [ "substituters" "trusted_public_keys" ];
    fleet = [ "prometheus_url" "query_timeout" ];
  };
  sections = filter (k: order ? ${k}) order."";

  # agent.toml spells "none" as "" for optional paths and listen addresses.
  orEmpty = v: if v == null then "" else v;

  # Root is always a peer the helper accepts; the agent's uid is the point.
  agentUids = if cfg.agentUid == 0 then [ 0 ] else [ 0 cfg.agentUid ];

  settings = {
    host = cfg.host;
    state_dir = cfg.stateDir;
    source = {
      urls = cfg.repository.urls;
      branch = cfg.repository.branch;
      spec_path = cfg.repository.specPath;
      ssh_key_file = orEmpty cfg.auth.sshKeyFile;
      known_hosts_file = orEmpty cfg.auth.knownHostsFile;
      token_file = orEmpty cfg.auth.tokenFile;
      allowed_signers_file = orEmpty cfg.trust.allowedSignersFile;
      gpg_keyring = orEmpty cfg.trust.gpgKeyring;
      allow_downgrade = cfg.trust.allowDowngrade;
      max_age = if cfg.repository.maxAge == null then "0s" else cfg.repository.maxAge;
    };
    system = {
      profile = paths.systemProfile;
      current_system = paths.currentSystem;
      booted_system = paths.bootedSystem;
      keep_generations = cfg.keepGenerations;
    };
    helper = {
      socket = paths.helperSocket;
      state_dir = paths.helperStateDir;
      profile = paths.helperProfile;
      agent_uids = agentUids;
    };
    agent.socket = paths.agentSocket;
    triggers = {
      interval = cfg.interval;
      jitter = cfg.jitter;
      webhook_listen = orEmpty cfg.webhook.listen;
      webhook_secret_file = orEmpty cfg.webhook.secretFile;
    };
    telemetry = {
      metrics_listen = orEmpty cfg.metrics.listen;
      log_format = cfg.logFormat;
      trace_url = orEmpty cfg.traceUrl;
    };
    nix = {
      substituters = cfg.binaryCache.substituters;
      trusted_public_keys = cfg.binaryCache.trustedPublicKeys;
    };
    fleet = {
      prometheus_url = orEmpty cfg.fleet.prometheusUrl;
      query_timeout = cfg.fleet.queryTimeout;
    };
  };

  # Keys the units depend on: the module sets them (StateDirectory, tmpfiles,
  # ExecStart, the sandbox's writable paths), so extraSettings may not, or
  # agent.toml and the units would disagree.
  reserved = {
    "" = { state_dir = "services.pullnix.stateDir"; };
    helper = {
      socket = "the module (${paths.helperSocket})";
      state_dir = "the module (${paths.helperStateDir})";
      profile = "the module (${paths.helperProfile})";
    };
    agent = { socket = "the module (${paths.agentSocket})"; };
  };
  refuseReserved = where: section: key:
    if reserved ? ${section} && reserved.${section} ? ${key}
    then throw ("services.pullnix.extraSettings${where}.${key}: the units depend on this key, "
      + "so only ${reserved.${section}.${key}} sets it")
    else true;

  unknown = where: key: known:
    throw ("services.pullnix.extraSettings${where}.${key}: agent.toml has no such key "
      + "(known: ${concatStringsSep ", " known}); see reconciler/common/config.py");

  # extraSettings may only name keys agent.toml has; a section must stay a table.
  checked = extra:
    let
      checkTop = k:
        if !(elem k order."") then unknown "" k order.""
        else if elem k sections then
          (if isAttrs extra.${k}
           then map (s: if elem s order.${k} then refuseReserved ".${k}" k s else unknown ".${k}" s order.${k}) (attrNames extra.${k})
           else throw "services.pullnix.extraSettings.${k}: must be an attribute set (the [${k}] table)")
        else [ (refuseReserved "" "" k) ];
    in
    builtins.deepSeq (map checkTop (attrNames extra)) extra;

  # extraSettings over the options, one level of tables deep (agent.toml has no deeper).
  merge = base: extra:
    base // builtins.mapAttrs (k: v: if isAttrs v && isAttrs (base.${k} or null) then base.${k} // v else v) extra;

  header = ''
    # /etc/pullnix/agent.toml: the pullnix machine config (trust roots, remotes, paths).
    # Written by the pullnix NixOS module; change `services.pullnix`, not this file.
  '';
in
header + toml.render { inherit order; } (merge settings (checked cfg.extraSettings))
