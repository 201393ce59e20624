"""The desired state as values: a NixOSDeployment and its spec, frozen and typed.

Owns the shapes every layer passes around once `pullnix.yaml` has been read:
durations are float seconds, closed sets are Literal types, a health check or
a gate holds exactly one kind. Field for field these mirror the schema in
`crds/nixosdeployment.yaml` (snake_case here, camelCase there), defaults
included; a unit test walks both.

Must not: read files, parse YAML or validate against the schema (that is
`reconciler.api`); this module only holds values and their invariants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

API_VERSION = "pullnix.dev/v1alpha1"
KIND = "NixOSDeployment"

Action = Literal["switch", "boot", "test"]
RebootPolicy = Literal["never", "ifNeeded"]
DriftPolicy = Literal["report", "revert"]

#: A place in a document: keys and list indexes from the root, e.g. ("spec", "gates", 0).
FieldPath = tuple[str | int, ...]


def _exactly_one(owner: str, kinds: Mapping[str, object]) -> str:
    present = [name for name, value in kinds.items() if value is not None]
    if len(present) != 1:
        raise ValueError(
            f"{owner} needs exactly one of {', '.join(kinds)}, got {', '.join(present) or 'none'}"
        )
    return present[0]


@dataclass(frozen=True)
class Metadata:
    name: str


@dataclass(frozen=True)
class Prebuilt:
    """A system built elsewhere (CI): its store path is read from a SystemLock file in the
    repository and fetched from the machine's binary caches, never evaluated here."""

    lock_file: str = "pullnix.lock.json"


@dataclass(frozen=True)
class Configuration:
    """What to deploy: a flake attribute, a classic configuration.nix path, or a prebuilt
    system named by a lock file (exactly one)."""

    flake: str | None = None
    classic: str | None = None
    prebuilt: Prebuilt | None = None

    def __post_init__(self) -> None:
        _exactly_one(
            "configuration",
            {"flake": self.flake, "classic": self.classic, "prebuilt": self.prebuilt},
        )

    @property
    def kind(self) -> Literal["flake", "classic", "prebuilt"]:
        if self.prebuilt is not None:
            return "prebuilt"
        return "flake" if self.flake is not None else "classic"

    def for_host(self, host: str) -> str:
        """The attribute path or file path with "{host}" replaced by `host` (for a prebuilt
        system: the lock file's path)."""
        template = self.flake if self.flake is not None else self.classic
        if template is None:
            assert self.prebuilt is not None  # __post_init__ guarantees one is set
            template = self.prebuilt.lock_file
        return template.replace("{host}", host)


@dataclass(frozen=True)
class Strategy:
    action: Action = "switch"
    trial: bool = True


@dataclass(frozen=True)
class Command:
    """A program and its arguments, run without a shell."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class GitRemoteCheck:
    """The machine still reaches the git remotes of its agent.toml."""


@dataclass(frozen=True)
class HttpCheck:
    url: str
    expect_status: int = 200
    body_regex: str | None = None


@dataclass(frozen=True)
class TcpCheck:
    host: str
    port: int


@dataclass(frozen=True)
class SystemdCheck:
    units: tuple[str, ...]


CheckKind = GitRemoteCheck | HttpCheck | TcpCheck | SystemdCheck | Command


@dataclass(frozen=True)
class HealthCheck:
    """One health check; exactly one of the kind fields is set (see `kind`)."""

    name: str
    git_remote: GitRemoteCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    systemd: SystemdCheck | None = None
    command: Command | None = None
    timeout: float = 10.0
    retries: int = 3
    interval: float = 5.0

    def __post_init__(self) -> None:
        _exactly_one(f"health check {self.name!r}", self._kinds())

    def _kinds(self) -> dict[str, CheckKind | None]:
        return {
            "gitRemote": self.git_remote,
            "http": self.http,
            "tcp": self.tcp,
            "systemd": self.systemd,
            "command": self.command,
        }

    @property
    def kind(self) -> CheckKind:
        """The one check this entry describes, ready for `match`."""
        return next(k for k in self._kinds().values() if k is not None)

    @property
    def kind_name(self) -> str:
        """The schema's name of the kind: gitRemote, http, tcp, systemd or command."""
        return next(name for name, k in self._kinds().items() if k is not None)


@dataclass(frozen=True)
class VulnixGate:
    max_new_severity: float = 7.0
    whitelist: str | None = None


@dataclass(frozen=True)
class Gate:
    """One gate; exactly one of `vulnix` and `command` is set (see `kind`)."""

    name: str
    vulnix: VulnixGate | None = None
    command: Command | None = None

    def __post_init__(self) -> None:
        _exactly_one(f"gate {self.name!r}", {"vulnix": self.vulnix, "command": self.command})

    @property
    def kind(self) -> VulnixGate | Command:
        kind = self.vulnix if self.vulnix is not None else self.command
        assert kind is not None  # __post_init__ guarantees one is set
        return kind


@dataclass(frozen=True)
class Rollback:
    automatic: bool = True
    confirm_timeout: float = 120.0
    retry_failed_revision: bool = False


@dataclass(frozen=True)
class RebootWindow:
    """Local time of day, "HH:MM"; an end before the start means the next day."""

    start: str
    end: str

    def contains(self, hour: int, minute: int) -> bool:
        """Whether the local time hour:minute falls in [start, end)."""
        now, start, end = hour * 60 + minute, _minutes(self.start), _minutes(self.end)
        if start <= end:
            return start <= now < end
        return now >= start or now < end


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Reboot:
    policy: RebootPolicy = "never"
    window: RebootWindow | None = None


@dataclass(frozen=True)
class Hooks:
    post_deploy: Command | None = None


@dataclass(frozen=True)
class WaveAfter:
    """What the previous wave must show first: `min_healthy` ("90%") of it Ready for `soak`."""

    soak: float = 0.0
    min_healthy: str = "100%"

    @property
    def min_healthy_fraction(self) -> float:
        return int(self.min_healthy.rstrip("%")) / 100


@dataclass(frozen=True)
class Wave:
    name: str
    hosts: tuple[str, ...]
    after: WaveAfter = WaveAfter()


@dataclass(frozen=True)
class Rollout:
    waves: tuple[Wave, ...] = ()


@dataclass(frozen=True)
class HostOverride:
    """The overrides for hosts whose name matches `glob` (fnmatch), as written in the file.

    `patch` is the raw, schema-checked mapping (camelCase keys, durations as
    text), read-only; `positions` maps a path inside it to its (line, column)
    in `origin`, so an error found after merging can still point at the file
    (where it was written is not part of its value: equality ignores both).
    """

    glob: str
    patch: Mapping[str, Any]
    origin: str = field(default="", compare=False)
    positions: Mapping[FieldPath, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )


@dataclass(frozen=True)
class DeploymentSpec:
    configuration: Configuration
    revision: str = ""
    strategy: Strategy = Strategy()
    health_checks: tuple[HealthCheck, ...] = ()
    gates: tuple[Gate, ...] = ()
    rollback: Rollback = Rollback()
    reboot: Reboot = Reboot()
    drift_policy: DriftPolicy = "report"
    interval: float = 300.0
    suspend: bool = False
    hooks: Hooks = Hooks()
    rollout: Rollout = Rollout()
    hosts: tuple[HostOverride, ...] = ()


@dataclass(frozen=True)
class NixOSDeployment:
    metadata: Metadata
    spec: DeploymentSpec
    api_version: str = API_VERSION
    kind: str = KIND
