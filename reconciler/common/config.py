"""The machine config, `agent.toml`: trust roots, remotes and paths of this machine.

Owns the one loader for the file that both processes read (the agent all of
it; the helper `host`, `[helper]`, `[system]` and `[source]`). It lives in the
standard-library base, `reconciler.common`, because the helper must read it
with the standard library alone. Every key has a type and a default; an
unknown key is an error naming the key, because a typo here could silently
drop a trust root.

Must not: read the repository, or accept anything the repository says.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from reconciler.common.durations import MAX_DURATION, parse_duration
from reconciler.common.tracelinks import TRACE_ID_PLACEHOLDER

DEFAULT_PATH = Path("/etc/pullnix/agent.toml")


class ConfigError(Exception):
    """The machine config is unreadable or wrong; the message says where and how to fix it."""


@dataclass(frozen=True)
class SourceConfig:
    urls: tuple[str, ...] = ()
    branch: str = "main"
    spec_path: str = "pullnix.yaml"
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    token_file: Path | None = None
    allowed_signers_file: Path | None = None
    gpg_keyring: Path | None = None
    allow_downgrade: bool = False
    max_age: float = 0.0  # the followed commit older than this is reported SourceStale; 0 = off


@dataclass(frozen=True)
class SystemConfig:
    profile: Path = Path("/nix/var/nix/profiles/system")
    current_system: Path = Path("/run/current-system")
    booted_system: Path = Path("/run/booted-system")
    keep_generations: int = 10


@dataclass(frozen=True)
class HelperConfig:
    socket: Path = Path("/run/pullnix/helper.sock")
    state_dir: Path = Path("/nix/var/pullnix/helper")
    profile: Path = Path("/nix/var/nix/profiles/pullnix/helper")
    agent_uids: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class AgentConfig:
    socket: Path = Path("/run/pullnix/agent.sock")


@dataclass(frozen=True)
class TriggersConfig:
    interval: float = 300.0
    jitter: float = 30.0
    webhook_listen: str = ""
    webhook_secret_file: Path | None = None


@dataclass(frozen=True)
class TelemetryConfig:
    metrics_listen: str = ""
    log_format: str = "logfmt"
    #: A link to a trace in a tracing UI, `{traceId}` standing for its id, e.g.
    #: `http://jaeger.example.org:16686/trace/{traceId}`; "" for none.
    trace_url: str = ""


@dataclass(frozen=True)
class NixConfig:
    """Where prebuilt systems come from and whose signatures count (trust roots stay here)."""

    substituters: tuple[str, ...] = ()
    trusted_public_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetConfig:
    prometheus_url: str = ""  # where the wave gate asks about the fleet; "" = no waves here
    query_timeout: float = 5.0


@dataclass(frozen=True)
class MachineConfig:
    host: str
    state_dir: Path = Path("/var/lib/pullnix")
    source: SourceConfig = field(default_factory=SourceConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    helper: HelperConfig = field(default_factory=HelperConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    nix: NixConfig = field(default_factory=NixConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)


_SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "system": SystemConfig,
    "helper": HelperConfig,
    "agent": AgentConfig,
    "triggers": TriggersConfig,
    "telemetry": TelemetryConfig,
    "nix": NixConfig,
    "fleet": FleetConfig,
}
_TOP_SCALARS = {"host": str, "state_dir": Path}
#: A store URL Nix can open as a substituter: SCHEME://…, an absolute path, or a
#: name; no whitespace (Nix splits the option there, so one entry would be two caches).
_STORE_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+|/\S*|daemon|local|auto")
_LOG_FORMATS = ("logfmt", "json")


def load_machine_config(path: Path = DEFAULT_PATH) -> MachineConfig:
    """Read and check `path`; raise ConfigError naming the file and key on any fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; write the machine config there or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5000 digits, `[[[[…` nesting
        raise ConfigError(f"{path}: not TOML a machine config can hold: {exc}") from None
    return parse_machine_config(data, origin=str(path))


def parse_machine_config(data: Mapping[str, Any], origin: str = "agent.toml") -> MachineConfig:
    """Turn parsed TOML into a MachineConfig, defaults applied; pure apart from the host name."""
    known = sorted([*_TOP_SCALARS, *_SECTIONS])
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key in _TOP_SCALARS:
            values[key] = _convert(origin, key, raw, _TOP_SCALARS[key])
        elif key in _SECTIONS:
            if not isinstance(raw, dict):
                raise ConfigError(f"{origin}: [{key}] must be a table, not {_kind(raw)}")
            values[key] = _section(origin, key, raw, _SECTIONS[key])
        else:
            raise ConfigError(f"{origin}: unknown key {key!r} (known: {', '.join(known)})")
    values.setdefault("host", socket.gethostname())
    if not values["host"]:
        raise ConfigError(f"{origin}: host: must not be empty")
    config = MachineConfig(**values)
    _check(config, origin)
    return config


def _check(config: MachineConfig, origin: str) -> None:
    """What the types alone do not say."""
    if config.telemetry.log_format not in _LOG_FORMATS:
        raise ConfigError(
            f"{origin}: telemetry.log_format: {config.telemetry.log_format!r} "
            f"is not one of {', '.join(_LOG_FORMATS)}"
        )
    trace_url = config.telemetry.trace_url
    if trace_url and (
        TRACE_ID_PLACEHOLDER not in trace_url or not trace_url.startswith(("http://", "https://"))
    ):
        raise ConfigError(
            f"{origin}: telemetry.trace_url: {trace_url!r} must be an http(s) URL with "
            f"{TRACE_ID_PLACEHOLDER} where the trace id goes, e.g. "
            f"'http://jaeger.example.org:16686/trace/{TRACE_ID_PLACEHOLDER}'"
        )
    if config.system.keep_generations < 1:
        raise ConfigError(f"{origin}: system.keep_generations: must be at least 1")
    if config.source.max_age < 0:
        raise ConfigError(f"{origin}: source.max_age: must not be negative")
    for cache in config.nix.substituters:
        if not _STORE_URL.fullmatch(cache):
            raise ConfigError(
                f"{origin}: nix.substituters: {cache!r} is not a Nix store URL; write one "
                "such as https://cache.example.org or s3://bucket?region=eu-central-1 "
                "(one cache per entry, no spaces)"
            )
    for key in config.nix.trusted_public_keys:
        name, colon, value = key.partition(":")
        if not name or not colon or not value or any(c.isspace() for c in key):
            raise ConfigError(
                f"{origin}: nix.trusted_public_keys: {key!r} is not a Nix public key; write "
                "NAME:BASE64 as `nix-store --generate-binary-cache-key` prints it"
            )
    url = config.fleet.prometheus_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{origin}: fleet.prometheus_url: {url!r} is not an http:// or https:// URL "
            "(such as http://prometheus.example.org:9090)"
        )
    for uid in config.helper.agent_uids:
        if uid < 0:
            raise ConfigError(f"{origin}: helper.agent_uids: {uid} is not a uid")


def require_urls(config: MachineConfig, origin: str = "agent.toml") -> None:
    """The agent cannot pull from nowhere; the helper can live without remotes."""
    if not config.source.urls:
        raise ConfigError(f"{origin}: source.urls: list at least one git URL to pull from")


def _section(origin: str, name: str, table: Mapping[str, Any], cls: type) -> Any:
    hints = {f.name: f.type for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in hints:
            raise ConfigError(
                f"{origin}: unknown key '{name}.{key}' "
                f"(known in [{name}]: {', '.join(sorted(hints))})"
            )
        values[key] = _convert(origin, f"{name}.{key}", raw, _TYPES[str(hints[key])])
    return cls(**values)


#: Durations that may be longer than a week: a deploy branch's heartbeat may be monthly.
_LONGEST = {"source.max_age": 366 * 86400.0}

_TYPES: dict[str, Any] = {
    "str": str,
    "bool": bool,
    "int": int,
    "float": "duration",
    "Path": Path,
    "Path | None": "optional-path",
    "tuple[str, ...]": "strings",
    "tuple[int, ...]": "ints",
}


def _convert(origin: str, key: str, raw: Any, kind: Any) -> Any:  # noqa: C901, PLR0912 - per type
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{origin}: {key}: expected {expected}, got {_kind(raw)} {raw!r}")

    if kind is str:
        if not isinstance(raw, str):
            raise wrong("a string")
        return raw
    if kind is bool:
        if not isinstance(raw, bool):
            raise wrong("true or false")
        return raw
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong("an integer")
        return raw
    if kind is Path:
        if not isinstance(raw, str) or not raw:
            raise wrong("a path")
        return Path(raw)
    if kind == "optional-path":
        if not isinstance(raw, str):
            raise wrong('a path (or "" for none)')
        return Path(raw) if raw else None
    if kind == "duration":
        if not isinstance(raw, str):
            raise wrong('a duration such as "5m"')
        try:
            return parse_duration(raw, days=True, maximum=_LONGEST.get(key, MAX_DURATION))
        except ValueError as exc:
            raise ConfigError(f"{origin}: {key}: {exc}") from None
    if kind == "strings":
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise wrong("a list of non-empty strings")
        return tuple(raw)
    if kind == "ints":
        if not isinstance(raw, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in raw
        ):
            raise wrong("a list of integers")
        return tuple(raw)
    raise AssertionError(f"no converter for {key}")  # a field added without a converter


def _kind(raw: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(raw), type(raw).__name__)
