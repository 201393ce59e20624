# The module's decisions that need no nixpkgs (pure: builtins only), so the
# tests prove each of them with real Nix on a machine without nixpkgs.
#
# Owns: the host name the machine answers to, the checks nixpkgs' option
# types cannot express (a secret in the store, NixOS's placeholder host name,
# openFirewall without an address), the firewall ports, the agent's PATH and
# its network environment (proxies, CA bundle).
# Must not: read `config` beyond what module.nix hands over, or spell a key of
# agent.toml (render-config.nix) or a unit setting (units.nix).
let
  inherit (builtins) elemAt filter fromJSON isString match storeDir stringLength substring;

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;

  # "addr:port" (IPv6 in brackets) -> port, as an integer.
  portOf = listen: fromJSON (elemAt (match ".*:([0-9]+)" listen) 0);

  # The options that name a secret, as path strings; `services.pullnix.` + name.
  secrets = cfg: [
    { name = "auth.sshKeyFile"; value = cfg.auth.sshKeyFile; }
    { name = "auth.tokenFile"; value = cfg.auth.tokenFile; }
    { name = "webhook.secretFile"; value = cfg.webhook.secretFile; }
  ];

  # A secret whose path is in the store: "${./key}" copies the key there, and
  # every user of the machine (and every binary cache) can read it.
  inStore = value: isString value && hasPrefix "${storeDir}/" value;

  listeners = cfg: [
    { name = "webhook"; inherit (cfg.webhook) listen openFirewall; }
    { name = "metrics"; inherit (cfg.metrics) listen openFirewall; }
  ];
in
rec {
  # NixOS's networking.hostName defaults to "nixos": a fleet of machines that
  # all answer to "nixos" would all apply one host's configuration, so that
  # default is never taken silently.
  placeholderHostName = "nixos";

  # The name in agent.toml: services.pullnix.host, else networking.hostName.
  host = cfg: hostName: if cfg.host != null then cfg.host else hostName;

  firewallPorts = cfg:
    map (l: portOf l.listen) (filter (l: l.openFirewall && l.listen != null) (listeners cfg));

  # module.nix's `assertions`, for the option values and networking.hostName.
  assertions = cfg: hostName:
    [
      {
        assertion = cfg.repository.urls != [ ];
        message = "services.pullnix.repository.urls: list at least one git URL for this machine to pull from.";
      }
      {
        assertion = host cfg hostName != "";
        message = "services.pullnix.host is empty (networking.hostName is not set): set one of them.";
      }
      {
        assertion = cfg.host != null || hostName != placeholderHostName;
        message = ''
          services.pullnix.host: networking.hostName is NixOS's default "${placeholderHostName}",
          so this machine would follow whatever the fleet says for a host of that name. Set
          networking.hostName, or services.pullnix.host = "${placeholderHostName}" if that really is its name.'';
      }
      {
        assertion = cfg.webhook.listen == null || cfg.webhook.secretFile != null;
        message = "services.pullnix.webhook.listen is set: set services.pullnix.webhook.secretFile too, so only signed pushes trigger a pass.";
      }
    ]
    ++ map
      (s: {
        assertion = !(inStore s.value);
        message = ''
          services.pullnix.${s.name} = "${s.value}" is in the Nix store, which every user can
          read: the secret was copied there (a Nix path such as ./key, or "''${./key}"). Give
          the path of a file outside the store as a string, e.g. "/run/secrets/pullnix-key".'';
      })
      (secrets cfg)
    ++ map
      (l: {
        assertion = !l.openFirewall || l.listen != null;
        message = "services.pullnix.${l.name}.openFirewall is set but ${l.name}.listen is null: there is no port to open.";
      })
      (listeners cfg);

  # The agent's PATH: nix for `nix build`; git because nix's git fetchers run
  # it; ssh for git+ssh flake inputs and ssh:// remotes (always: a flake input
  # may be git+ssh with no trust setting at all); gpg only to verify OpenPGP
  # signatures. `pkgs` needs only these four attributes.
  agentPath = pkgs: cfg:
    [ pkgs.nix pkgs.git pkgs.openssh ]
    ++ (if cfg.trust.gpgKeyring != null then [ pkgs.gnupg ] else [ ])
    ++ cfg.extraPath;

  # What the agent and its `nix` and `git` need to reach a remote the way the
  # nix-daemon does: the machine's proxies (networking.proxy.envVars) and its
  # CA bundle under the names curl, OpenSSL (libgit2) and Nix read.
  networkEnvironment = proxyEnvVars: caBundle:
    proxyEnvVars // (if caBundle == null then { } else {
      CURL_CA_BUNDLE = caBundle;
      SSL_CERT_FILE = caBundle;
      NIX_SSL_CERT_FILE = caBundle;
    });
}
