# The defaults of the `services.pullnix` options that are plain values (pure:
# no nixpkgs). module.nix declares the options with these defaults; the tests
# render agent.toml from them, so the two cannot drift apart.
# (`package` defaults to this repository's package: module.nix knows that,
# this file cannot. `host` null means networking.hostName, see wiring.nix.)
{
  host = null;
  stateDir = "/var/lib/pullnix";
  repository = {
    urls = [ ];
    branch = "main";
    specPath = "pullnix.yaml";
    maxAge = null;
  };
  binaryCache = {
    substituters = [ ];
    trustedPublicKeys = [ ];
  };
  auth = {
    sshKeyFile = null;
    knownHostsFile = null;
    tokenFile = null;
  };
  trust = {
    allowedSignersFile = null;
    gpgKeyring = null;
    allowDowngrade = false;
  };
  interval = "5m";
  jitter = "30s";
  webhook = {
    listen = null;
    secretFile = null;
    openFirewall = false;
  };
  metrics = {
    listen = null;
    openFirewall = false;
  };
  fleet = {
    prometheusUrl = null;
    queryTimeout = "5s";
  };
  logFormat = "logfmt";
  traceUrl = null;
  keepGenerations = 10;
  agentUid = 399;
  otlp = {
    endpoint = null;
    protocol = "http/protobuf";
    serviceName = "pullnix-agent";
  };
  extraPath = [ ];
  extraSettings = { };
}
