"""The journal survives SIGKILL mid-write: a reader always finds one whole operation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconciler.common.answers import operation_from_json as from_json
from reconciler.common.answers import operation_to_json as to_json
from reconciler.common.protocol import ApplyRequest, CheckSpec
from reconciler.helper import machine as m
from reconciler.helper.journal import Journal

REPO = Path(__file__).resolve().parents[2]
STORE = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"

WRITER = """
import sys
from pathlib import Path
from reconciler.helper import machine as m
from reconciler.helper.journal import Journal
from reconciler.common.protocol import ApplyRequest
journal = Journal(Path(sys.argv[1]))
req = ApplyRequest(store_path=sys.argv[2], revision="r" * 4000)  # big enough to span pages
op = m.begin("op-1", "apply", req, m.Previous(None, None, None), 0.0)
journal.write(op)
print("ready", flush=True)
i = 0
while True:
    i += 1
    journal.write(op if i % 2 else m.advance(op, m.Done(), float(i)))
"""


def test_killed_writer_leaves_a_whole_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for round_ in range(20):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), STORE], stdout=subprocess.PIPE, cwd=REPO
        ) as writer:
            assert writer.stdout is not None
            assert writer.stdout.readline() == b"ready\n"
            time.sleep(0.005 * (round_ % 5))
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        op = journal.load()
        assert op is not None
        assert op.state in (m.State.PENDING, m.State.ACTIVATING)
        assert op.request.revision == "r" * 4000
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "journal.json"]
    assert all(name.startswith(".journal.json.") for name in leftovers)  # temp files only


def test_operation_round_trips_through_json(tmp_path: Path) -> None:
    check = CheckSpec("api", "tcp", (("host", "127.0.0.1"), ("port", 80)), 2.0, 1, 0.2)
    req = ApplyRequest(
        STORE,
        "r2",
        "switch",
        True,
        (check,),
        30.0,
        True,
        "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        60.0,
    )
    op = m.begin("op-1", "apply", req, m.Previous(STORE, STORE, 3), 1.0)
    for i, event in enumerate(
        [
            m.Done(),
            m.Done(),
            m.Checked(m.CheckResult("api", "tcp", True, "ok", 1, "a", "b")),
            m.Confirmed(),
        ]
    ):
        op = m.advance(op, event, 2.0 + i)
    journal = Journal(tmp_path)
    journal.write(op)
    assert journal.load() == op
    assert from_json(json.loads(json.dumps(to_json(op)))) == op
    assert oct(os.stat(tmp_path / "journal.json").st_mode & 0o777) == "0o640"
    journal.finish(op)
    assert journal.load() is None
    assert journal.find("op-1") == to_json(op)
    assert journal.find("../journal") is None


def test_sweep_removes_a_killed_writers_temp_files_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write(None)
    (tmp_path / ".journal.json.123.tmp").write_text("{half")
    journal.sweep()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
    assert journal.load() is None
