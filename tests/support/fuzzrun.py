"""Run the parser fuzz targets for longer than the unit test does, by hand.

`python -m tests.support.fuzzrun SECONDS [TARGET ...]` runs each target of
`tests/unit/test_parser_fuzz.py` (all of them by default) for SECONDS, a new
seed every 200 mutants, and prints how many mutants it ran and parsed and each
distinct escape (exception type and where it was raised) with one input that
raised it. The inputs worth keeping go into that file's tables.

Must not: run in the suite (it is bounded by time, the suite's tests are not).
"""

from __future__ import annotations

import reprlib
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from tests.support.mutate import outcomes
from tests.unit.test_parser_fuzz import TARGETS

BATCH = 200


def main(argv: list[str]) -> int:
    budget = float(argv[0])
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother = 4, 200, 200
    warnings.simplefilter("ignore")  # re's FutureWarning for "[[" is a warning, not an error
    escaped_anywhere = False
    for name in argv[1:] or sorted(TARGETS):
        target, tmp = TARGETS[name], Path(tempfile.mkdtemp())
        deadline, seed, total, parsed = time.monotonic() + budget, 1, 0, 0
        escapes: dict[tuple[str, str, int], tuple[str, str]] = {}
        while time.monotonic() < deadline:
            n, found = outcomes(
                lambda raw, t=target, d=tmp: t.parse(raw, d),
                target.inputs,
                target.errors,
                seed=seed,
                iterations=BATCH,
            )
            total, parsed, seed = total + BATCH, parsed + n, seed + 1
            for finding in found:
                frame = traceback.extract_tb(finding.error.__traceback__)[-1]
                key = (type(finding.error).__name__, frame.filename, frame.lineno or 0)
                escapes.setdefault(key, (shown.repr(finding.input), str(finding.error)[:200]))
        print(f"{name}: {total} mutants, {parsed} parsed, {len(escapes)} distinct escapes")
        for (kind, filename, line), (raw, message) in escapes.items():
            print(f"  {kind} at {filename}:{line}: {message}\n    input: {raw}")
        escaped_anywhere = escaped_anywhere or bool(escapes)
    return 1 if escaped_anywhere else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
