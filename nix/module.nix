# The pullnix NixOS module: `services.pullnix`.
#
# Owns: the options, and wiring the pure parts into NixOS: render-config.nix
# writes /etc/pullnix/agent.toml, units.nix defines the three units, this
# file adds the user, the files and the firewall; wiring.nix decides what
# needs no nixpkgs (the host name, the checks, the agent's PATH).
# Must not: spell a key of agent.toml (render-config.nix does) or a unit
# setting (units.nix does), so both stay testable without nixpkgs.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf mkForce types literalExpression optional;

  cfg = config.services.pullnix;
  defaults = import ./defaults.nix;
  paths = import ./paths.nix;
  wiring = import ./wiring.nix;

  # The grammar of reconciler/common/durations.py.
  duration = types.strMatching "([0-9]+(\\.[0-9]+)?(ms|s|m|h))+";
  # A secret is named by an absolute path given as a string, so its content
  # is never copied into the world-readable Nix store.
  secretFile = types.nullOr (types.strMatching "/.+");
  # A public file (keys, signers) may be a path in the fleet repository.
  publicFile = types.nullOr types.path;
  listen = types.nullOr (types.strMatching ".+:[0-9]+");

  host = wiring.host cfg config.networking.hostName;
  configFile = pkgs.writeText "pullnix-agent.toml" (import ./render-config.nix (cfg // { inherit host; }));

  units = import ./units.nix {
    agentPackage = cfg.package;
    helperPackage = cfg.helperPackage;
    nixPackage = config.nix.package;
    agentPath = wiring.agentPath {
      nix = config.nix.package;
      inherit (pkgs) git gnupg;
      openssh = config.programs.ssh.package;
    } cfg;
    # As nixpkgs' nix-daemon unit has them.
    networkEnvironment = wiring.networkEnvironment config.networking.proxy.envVars paths.caBundle;
    inherit configFile;
    inherit (cfg) stateDir otlp;
  };

  storePathGlobals = lib.mapAttrs (_: _: null) (lib.filterAttrs
    (_: value: value != null && lib.hasInfix builtins.storeDir (toString value))
    config.systemd.globalEnvironment);

  helperUnitText = config.systemd.units."pullnix-helper.service".text or "";
in
{
  options.services.pullnix = {
    enable = mkEnableOption "pullnix, which makes this machine follow a git repository (agent and root helper)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage \"\${pullnix}/nix/package.nix\" { }";
      description = "The pullnix package: the agent (`pullnix agent`) and the command line.";
    };

    helperPackage = mkOption {
      type = types.package;
      default = cfg.package.helper;
      defaultText = literalExpression "config.services.pullnix.package.helper";
      description = ''
        The helper (Python and `reconciler.helper` only). On first boot it becomes
        the profile ${paths.helperProfile}, which the helper's unit runs. Later
        generations never restart the helper: the agent sees that ${paths.wantedHelper}
        (this package) differs from the profile and asks the helper to upgrade itself.
      '';
    };

    host = mkOption {
      type = types.nullOr types.str;
      default = defaults.host;
      defaultText = literalExpression "config.networking.hostName";
      description = ''
        The name this machine has in the desired state (`hosts:` globs and `{host}`
        in the configuration attribute). null: networking.hostName, unless that is
        NixOS's default "nixos", which the build refuses (set either one).
      '';
    };

    stateDir = mkOption {
      type = types.strMatching "/.+";
      default = defaults.stateDir;
      description = "The agent's state: the git mirror, status.json, its record and build results.";
    };

    agentUid = mkOption {
      type = types.ints.between 1 65533;
      default = defaults.agentUid;
      description = ''
        The uid of the `pullnix` system user the agent runs as. It is fixed
        because the helper admits the agent on its socket by uid (agent.toml
        `[helper] agent_uids`), and NixOS only knows a user's uid at build
        time when it is set. ${toString defaults.agentUid} is the top of NixOS's
        static range (static ids are allocated upwards from 0, dynamic system
        ids start at 400), so it is unlikely to clash; if it does, NixOS's uid
        uniqueness check fails the build and you pick another.
      '';
    };

    repository = {
      urls = mkOption {
        type = types.listOf types.str;
        default = defaults.repository.urls;
        example = [ "ssh://git@git.example.org/fleet.git" "https://git.example.org/fleet.git" ];
        description = "The fleet repository's git URLs, tried in order (ssh://, https://, git://, file://).";
      };
      branch = mkOption {
        type = types.str;
        default = defaults.repository.branch;
        description = "The branch this machine follows.";
      };
      specPath = mkOption {
        type = types.str;
        default = defaults.repository.specPath;
        description = "The desired-state file (`kind: NixOSDeployment`) in the repository.";
      };
      maxAge = mkOption {
        type = types.nullOr (types.strMatching "([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+");
        default = defaults.repository.maxAge;
        example = "7d";
        description = ''
          When the commit the machine follows is older than this, the status says
          SourceStale (a freeze attack, or a CI that stopped re-signing its
          heartbeat commit); null: off.
        '';
      };
    };

    binaryCache = {
      substituters = mkOption {
        type = types.listOf types.str;
        default = defaults.binaryCache.substituters;
        example = [ "https://cache.example.org" ];
        description = ''
          Binary caches a prebuilt system (`configuration.prebuilt` in pullnix.yaml,
          published by `pullnix publish`) is fetched from. Also added to
          nix.settings.substituters, so the nix-daemon accepts them from the agent.
        '';
      };
      trustedPublicKeys = mkOption {
        type = types.listOf types.str;
        default = defaults.binaryCache.trustedPublicKeys;
        example = [ "cache.example.org-1:AAAA..." ];
        description = ''
          The keys whose signatures make a fetched path acceptable (a trust root of
          the machine, never read from the repository). Also added to
          nix.settings.trusted-public-keys.
        '';
      };
    };

    auth = {
      sshKeyFile = mkOption {
        type = secretFile;
        default = defaults.auth.sshKeyFile;
        example = "/run/secrets/pullnix-deploy-key";
        description = "The deploy key for ssh:// URLs, as a path string (never a Nix path: it would land in the store). Must be readable by the `pullnix` user.";
      };
      knownHostsFile = mkOption {
        type = publicFile;
        default = defaults.auth.knownHostsFile;
        description = "Pinned host keys for ssh:// URLs (known_hosts format).";
      };
      tokenFile = mkOption {
        type = secretFile;
        default = defaults.auth.tokenFile;
        example = "/run/secrets/pullnix-token";
        description = "A file holding the access token for https:// URLs, as a path string. Must be readable by the `pullnix` user.";
      };
    };

    trust = {
      allowedSignersFile = mkOption {
        type = publicFile;
        default = defaults.trust.allowedSignersFile;
        example = literalExpression "./allowed_signers";
        description = ''
          git's SSH `allowed_signers` file. When set, every commit the machine
          applies must carry a valid SSH signature by one of these keys. A trust
          root of the machine: it is never read from the repository being followed.
        '';
      };
      gpgKeyring = mkOption {
        type = publicFile;
        default = defaults.trust.gpgKeyring;
        description = "An OpenPGP keyring; when set, every commit applied must carry a valid signature by one of its keys.";
      };
      allowDowngrade = mkOption {
        type = types.bool;
        default = defaults.trust.allowDowngrade;
        description = "Apply a commit that does not descend from the last one applied (off: protection against rollback attacks).";
      };
    };

    interval = mkOption {
      type = duration;
      default = defaults.interval;
      description = "How often to look at the repository when nothing triggers a pass sooner (30s, 5m, 1h).";
    };

    jitter = mkOption {
      type = duration;
      default = defaults.jitter;
      description = "Random delay added to each interval, so a fleet does not pull at the same second.";
    };

    webhook = {
      listen = mkOption {
        type = listen;
        default = defaults.webhook.listen;
        example = "0.0.0.0:9170";
        description = "Address:port for the push-webhook receiver (HMAC-signed events); null: off.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = defaults.webhook.openFirewall;
        description = "Open webhook.listen's TCP port in the firewall.";
      };
      secretFile = mkOption {
        type = secretFile;
        default = defaults.webhook.secretFile;
        description = "The HMAC secret of the webhook, as a path string readable by the `pullnix` user.";
      };
    };

    metrics = {
      listen = mkOption {
        type = listen;
        default = defaults.metrics.listen;
        example = "0.0.0.0:9171";
        description = "Address:port for Prometheus metrics; null: off.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = defaults.metrics.openFirewall;
        description = "Open metrics.listen's TCP port in the firewall (for a Prometheus on another machine).";
      };
    };

    fleet.prometheusUrl = mkOption {
      type = types.nullOr (types.strMatching "https?://.+");
      default = defaults.fleet.prometheusUrl;
      example = "http://prometheus.example.org:9090";
      description = ''
        The Prometheus that scrapes the fleet's agents; the agent asks it whether the
        earlier waves of `spec.rollout.waves` are healthy before it deploys. null: a host
        in a wave after the first waits (fail closed) until it is set.
      '';
    };

    fleet.queryTimeout = mkOption {
      type = types.str;
      default = defaults.fleet.queryTimeout;
      description = "How long one question to Prometheus may take, such as \"5s\".";
    };

    logFormat = mkOption {
      type = types.enum [ "logfmt" "json" ];
      default = defaults.logFormat;
      description = "The agent's log lines.";
    };

    traceUrl = mkOption {
      type = types.nullOr (types.strMatching "https?://.*[{]traceId[}].*");
      default = defaults.traceUrl;
      example = "http://jaeger.example.org:16686/trace/{traceId}";
      description = "A trace's link in your tracing UI, `{traceId}` standing for its id; `pullnix history --wide` and `--json` show it. null: none.";
    };

    keepGenerations = mkOption {
      type = types.ints.positive;
      default = defaults.keepGenerations;
      description = "System profile generations to keep.";
    };

    otlp = {
      endpoint = mkOption {
        type = types.nullOr types.str;
        default = defaults.otlp.endpoint;
        example = "http://jaeger.example.org:4318";
        description = "OTLP collector for traces (OTEL_EXPORTER_OTLP_ENDPOINT of the agent); null: none set.";
      };
      protocol = mkOption {
        type = types.enum [ "http/protobuf" "grpc" ];
        default = defaults.otlp.protocol;
        description = "OTEL_EXPORTER_OTLP_PROTOCOL (4318 is the usual http/protobuf port, 4317 grpc).";
      };
      serviceName = mkOption {
        type = types.str;
        default = defaults.otlp.serviceName;
        description = "OTEL_SERVICE_NAME of the agent's traces.";
      };
    };

    extraPath = mkOption {
      type = types.listOf types.package;
      default = defaults.extraPath;
      example = literalExpression "[ pkgs.vulnix ]";
      description = "More packages on the agent's PATH, for gates (`vulnix`, commands of the repository).";
    };

    extraSettings = mkOption {
      type = types.attrsOf types.anything;
      default = defaults.extraSettings;
      example = { telemetry.log_format = "json"; system.keep_generations = 20; };
      description = ''
        Keys of agent.toml, merged over what the options above render (one
        table deep). Only keys agent.toml has are accepted; a typo fails the build,
        and so do the keys the units depend on (`state_dir`: set stateDir;
        `helper.socket`, `helper.state_dir`, `helper.profile`, `agent.socket`: fixed).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = wiring.assertions cfg config.networking.hostName;

    networking.firewall.allowedTCPPorts = wiring.firewallPorts cfg;

    warnings =
      optional (config.system.configurationRevision == null) ''
        services.pullnix: system.configurationRevision is not set, so the running
        system does not record the commit it was built from (pullnix writes it to
        the toplevel's configuration-revision for its downgrade check). In the
        fleet flake set
          system.configurationRevision = self.rev or self.dirtyRev or "dirty";
      ''
      ++ optional (lib.hasInfix "/nix/store/" helperUnitText) ''
        services.pullnix: the unit pullnix-helper.service names a store path
        (set by some module through its own settings), so its text changes between
        generations. Activation still never restarts it (restartIfChanged = false),
        but please report this.
      '';

    users.users.pullnix = {
      isSystemUser = true;
      uid = cfg.agentUid;
      group = "pullnix";
      description = "pullnix agent";
    };
    users.groups.pullnix = { };

    # The commit this system was built from, as a file of the toplevel
    # (NixOS keeps it only in nixos-version): the downgrade check reads it
    # from the running system when the helper has no record of its commit.
    system.systemBuilderCommands = import ./revision.nix config.system.configurationRevision;

    environment.etc."pullnix/agent.toml".source = configFile;
    # The daemon fetches for the unprivileged agent only from caches it was told to
    # trust, checked against keys it was told to trust.
    nix.settings.substituters = cfg.binaryCache.substituters;
    nix.settings.trusted-public-keys = cfg.binaryCache.trustedPublicKeys;
    # The helper this generation wants; see helperPackage.
    environment.etc."pullnix/helper".source = cfg.helperPackage;

    # `pullnix status` and friends for the operator; git and ssh for the
    # helper's gitRemote health check, which takes them from the running
    # system (/run/current-system/sw/bin) so its unit names no store path.
    environment.systemPackages = [ cfg.package pkgs.git config.programs.ssh.package ];

    systemd.tmpfiles.rules = units.tmpfiles;

    systemd.services.pullnix-agent = units.agent;
    systemd.services.pullnix-helper-install = units.helperInstall;
    systemd.services.pullnix-helper = units.helper // {
      # Global variables naming a store path are dropped for the helper
      # (NixOS's LOCALE_ARCHIVE and TZDIR are; others' too), and the PATH of
      # store paths NixOS gives every service is overridden.
      environment = storePathGlobals // units.helper.environment // {
        PATH = mkForce units.helper.environment.PATH;
      };
    };
  };
}
