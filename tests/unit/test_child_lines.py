"""How a child's stderr is passed on line by line (Nix's log): whole lines, long ones cut."""

from __future__ import annotations

import pytest

from reconciler.common.child import Lines


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"buil", b"ding\nfet", b"ching"], [b"building", b"fetching"]),  # the last at close
        ([b"\r\n\n"], [b"\r", b""]),  # kept as they came: the caller strips
        ([b"x" * 10], [b"x" * 10]),
        ([b"x" * 11], [b"x" * 11]),  # longer than the limit: passed on as it stands
        ([b"x" * 6, b"x" * 6, b"y\n"], [b"x" * 12, b"y"]),
        ([b"x" * 8 + b"\nabc"], [b"x" * 8, b"abc"]),
    ],
)
def test_lines_come_whole_and_a_line_with_no_end_comes_cut(
    chunks: list[bytes], lines: list[bytes]
) -> None:
    got: list[bytes] = []
    splitter = Lines(got.append, limit=10)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close()
    assert got == lines
