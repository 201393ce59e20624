"""The record of committed generations: which revision each system came from.

The helper appends an entry each time it commits a generation; the agent's
source layer reads it for downgrade protection, so the check survives the loss
of the agent's own state dir. File: `<[helper] state_dir>/generations.json`,
`{"version": 1, "generations": [{"generation", "storePath", "revision",
"committedAt"}, ...]}`, oldest first, mode 0640 (the agent reads it through the
state dir's group; only root writes it). Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.atomic import write_json_atomic

RECORDS_FILE = "generations.json"
_MAX_ENTRIES = 1000
_MODE = 0o640


@dataclass(frozen=True)
class CommittedGeneration:
    generation: int | None
    store_path: str
    revision: str
    committed_at: str
    source_revision: str = ""


def read_committed(state_dir: Path) -> list[CommittedGeneration]:
    """Every recorded commit, oldest first; an absent or unreadable file reads as none."""
    try:
        doc = json.loads((state_dir / RECORDS_FILE).read_text(encoding="utf-8"))
        return [
            CommittedGeneration(
                generation=e.get("generation"),
                store_path=str(e["storePath"]),
                revision=str(e["revision"]),
                committed_at=str(e.get("committedAt", "")),
                source_revision=str(e.get("sourceRevision") or ""),
            )
            for e in doc["generations"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def revision_of(state_dir: Path, store_path: str) -> str | None:
    """The revision the newest commit of `store_path` came from, if recorded."""
    entry = committed_of(state_dir, store_path)
    return entry.revision if entry is not None else None


def committed_of(state_dir: Path, store_path: str) -> CommittedGeneration | None:
    """The newest recorded commit of `store_path`, if any."""
    for entry in reversed(read_committed(state_dir)):
        if entry.store_path == store_path:
            return entry
    return None


def _to_json(e: CommittedGeneration) -> dict[str, object]:
    out: dict[str, object] = {
        "generation": e.generation,
        "storePath": e.store_path,
        "revision": e.revision,
        "committedAt": e.committed_at,
    }
    if e.source_revision:
        out["sourceRevision"] = e.source_revision
    return out


def append_committed(state_dir: Path, entry: CommittedGeneration) -> None:
    """Add `entry` atomically, keeping the newest entries only."""
    entries = [*read_committed(state_dir), entry][-_MAX_ENTRIES:]
    write_json_atomic(
        state_dir / RECORDS_FILE,
        {
            "version": 1,
            "generations": [_to_json(e) for e in entries],
        },
        mode=_MODE,
    )
