# The systemd units of a pullnix machine, as NixOS `systemd.services.<name>`
# settings (pure: builtins only, no nixpkgs), so the tests can prove with
# real Nix and no nixpkgs that the helper's unit does not depend on the
# package.
#
# Owns: what each unit runs, its ordering, restart behaviour and sandbox.
# Must not: put a store path into pullnix-helper (its text must read the same
# in every generation, so activation has nothing to restart), or use
# `script`/`path` there (both turn into store paths).
#
# module.nix passes real packages; the tests pass fake store paths.
{
  # The pullnix application (bin/pullnix).
  agentPackage
, # The helper derivation (bin/pullnix-helper); only the first-boot install unit names it.
  helperPackage
, # Nix, for `nix-env` in the install unit.
  nixPackage
, # Packages on the agent's PATH (nix and git for `nix build` of git+file flakes, ...).
  agentPath ? [ ]
, # The rendered agent.toml in the store: a change restarts the agent, never the helper.
  configFile
, stateDir
, otlp ? { endpoint = null; protocol = "http/protobuf"; serviceName = "pullnix-agent"; }
, # Proxies and the CA bundle for both processes' git and nix (wiring.nix's
  # networkEnvironment); never a store path, so the helper's unit may carry it.
  networkEnvironment ? { }
, user ? "pullnix"
, group ? "pullnix"
}:
let
  inherit (builtins) stringLength substring;
  paths = import ./paths.nix;

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  # StateDirectory= can only make directories under /var/lib; anywhere else
  # the module creates the directory (tmpfiles) and opens it (ReadWritePaths).
  stateUnderVarLib = hasPrefix "/var/lib/" stateDir;
  stateDirectoryName = substring (stringLength "/var/lib/") (stringLength stateDir) stateDir;

  otlpEnvironment =
    { OTEL_SERVICE_NAME = otlp.serviceName; }
    // (if otlp.endpoint == null then { } else {
      OTEL_EXPORTER_OTLP_ENDPOINT = otlp.endpoint;
      OTEL_EXPORTER_OTLP_PROTOCOL = otlp.protocol;
    });
in
{
  # ---------------------------------------------------------------- the agent
  # The controller. It lives in the system closure and an activation may
  # restart it freely: the switch it asked for runs in the helper.
  agent = {
    description = "pullnix agent: reconcile this machine with its fleet repository";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" "pullnix-helper.service" ];
    after = [ "network-online.target" "nix-daemon.socket" "pullnix-helper.service" ];
    # An ordinary service: a new generation restarts it, at the end of
    # switch-to-configuration rather than stopping it at the start, so the
    # agent is down for as short a time as possible.
    restartIfChanged = true;
    stopIfChanged = false;
    restartTriggers = [ configFile ];
    path = agentPath;
    environment = networkEnvironment // otlpEnvironment // {
      PULLNIX_CONFIG = paths.configFile;
      # `nix build` as an unprivileged user: through the daemon, flakes on
      # whatever nix.conf says, caches in the unit's own directories.
      NIX_REMOTE = "daemon";
      NIX_CONFIG = "extra-experimental-features = nix-command flakes";
      HOME = stateDir;
      XDG_CACHE_HOME = "/var/cache/${paths.agentCacheDir}";
    };
    serviceConfig = {
      Type = "notify";
      NotifyAccess = "main";
      # The agent pings the watchdog from its loop, also while a build runs.
      WatchdogSec = "2min";
      TimeoutStartSec = "2min";
      ExecStart = "${agentPackage}/bin/pullnix agent";
      Restart = "always";
      RestartSec = "5s";

      # Least privilege. The agent runs as its own system user; its uid is
      # fixed (services.pullnix.agentUid) because the helper admits peers on
      # its socket by uid (agent.toml [helper] agent_uids).
      User = user;
      Group = group;
      UMask = "0027";
      RuntimeDirectory = paths.agentRuntimeDir; # /run/pullnix/agent: the local API socket
      RuntimeDirectoryMode = "0755";
      CacheDirectory = paths.agentCacheDir; # nix's fetcher and eval caches
      CacheDirectoryMode = "0750";
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
      AmbientCapabilities = "";
      # Read-only everywhere except its own directories. It still needs, and
      # gets without write access:
      #  - /nix/var/nix/daemon-socket/socket: `nix build` talks to the
      #    nix-daemon (connecting to a socket is not a write to the file
      #    system); the daemon writes the store and registers the GC root
      #    of the build result (nix.settings.allowed-users must admit
      #    `pullnix`; the default "*" does);
      #  - /run/pullnix/helper.sock: the helper's API;
      #  - the system and helper profiles, /run/current-system: to observe;
      #  - the deploy key, token and webhook secret files named in agent.toml:
      #    readable by the `pullnix` user, outside /home and /root.
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      ProtectProc = "invisible";
      # Git remotes and webhooks over IP, the daemon and helper over Unix
      # sockets; netlink because glibc's getaddrinfo asks it which address
      # families the host has.
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      RemoveIPC = true;
      KeyringMode = "private";
      SystemCallArchitectures = "native";
      SystemCallFilter = [ "@system-service" "~@privileged" ];
      # A refused call fails with EPERM instead of killing the process: nix
      # and git probe some calls (setrlimit for a larger stack, ...) and cope.
      SystemCallErrorNumber = "EPERM";
      # Not set, on purpose: MemoryDenyWriteExecute (pygit2 calls back into
      # Python through cffi/libffi closures, which need writable+executable
      # memory on some platforms); PrivateUsers (the helper and the daemon
      # must see the agent's real uid on their sockets).
    } // (if stateUnderVarLib then {
      StateDirectory = stateDirectoryName; # the git mirror, status.json, build results
      StateDirectoryMode = "0750";
    } else {
      ReadWritePaths = [ stateDir ];
    });
  };

  # --------------------------------------------------------------- the helper
  # The switcher, root. Its unit starts a fixed path in its own profile and
  # holds no store path, so its text is the same in every generation and
  # activation never restarts, stops or reloads it; the three settings below
  # say so again, in case the text ever does differ. Upgrades go through the
  # helper's own `upgrade` request (the agent sends it when /etc/pullnix/helper
  # and the profile differ); the helper re-execs itself when idle.
  helper = {
    description = "pullnix helper: trial activation, health verification, commit or rollback";
    wantedBy = [ "multi-user.target" ];
    wants = [ "pullnix-helper-install.service" ];
    after = [ "pullnix-helper-install.service" "nix-daemon.socket" ];
    restartIfChanged = false;
    stopIfChanged = false;
    unitConfig."X-StopOnRemoval" = false;
    # No start limit: however often it has crashed, the one process that can
    # roll back is started again (RestartSec spaces the attempts).
    startLimitIntervalSec = 0;
    # NixOS gives every service a PATH of store paths and the global
    # LOCALE_ARCHIVE and TZDIR (also store paths); module.nix forces these
    # values over them. nix-env, systemctl, git and ssh come from the running
    # system (module.nix installs git and ssh), falling back to the booted
    # one should a generation on trial lack them; the helper runs each
    # generation's switch-to-configuration by its store path.
    environment = networkEnvironment // {
      PATH = "/run/current-system/sw/bin:/run/booted-system/sw/bin:/run/wrappers/bin";
      LOCALE_ARCHIVE = null;
      TZDIR = "/etc/zoneinfo";
      LANG = "C.UTF-8";
    };
    serviceConfig = {
      Type = "simple";
      ExecStart = "${paths.helperProfile}/bin/pullnix-helper --config ${paths.configFile}";
      Restart = "always";
      RestartSec = "2s";
      # The process that must always be able to roll back is the last one
      # the OOM killer should pick.
      OOMScoreAdjust = -900;
      # No sandbox: it runs switch-to-configuration, which may change any
      # part of the system (/etc, the boot loader, every unit).
    };
  };

  # ---------------------------------------- first boot: the helper's profile
  # Creates the helper's profile when there is none, pointing at this
  # generation's helper. Never touches an existing profile: from then on the
  # helper upgrades itself. An ordinary unit (it may name store paths).
  helperInstall = {
    description = "pullnix: install the helper's profile if there is none yet";
    wantedBy = [ "multi-user.target" ];
    before = [ "pullnix-helper.service" ];
    unitConfig.ConditionPathExists = "!${paths.helperProfile}";
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${nixPackage}/bin/nix-env --profile ${paths.helperProfile} --set ${helperPackage}";
    };
  };

  # ------------------------------------------------------ directories (tmpfiles)
  tmpfiles = [
    # The helper binds its socket here, mode 0660, as root; the agent must be
    # able to connect (the helper then admits it by uid). The setgid bit makes
    # the socket's group the agent's, without the helper or what it runs
    # (switch-to-configuration) ever having that group. The agent's own
    # socket is in its RuntimeDirectory below.
    "d ${paths.runtimeDir} 2750 root ${group} - -"
    # nix-env cannot create the profile's parent directory itself.
    "d ${paths.helperProfileDir} 0755 root root - -"
    # The helper's state (journal, finished operations, the records of
    # committed generations): root writes, the agent's group only reads, for
    # its journal watch and its downgrade check. setgid gives the helper's
    # files (0640) that group. The helper keeps the mode at 0750 plus setgid
    # and refuses a state dir it does not own.
    "d ${paths.helperStateDir} 2750 root ${group} - -"
  ] ++ (if stateUnderVarLib then [ ] else [ "d ${stateDir} 0750 ${user} ${group} - -" ]);
}
