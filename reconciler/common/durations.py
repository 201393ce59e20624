"""Durations as written by users: "30s", "5m", "1h30m", "250ms".

Owns the one grammar for durations, shared by the machine config and the
desired state (whose schema carries the same pattern), and the one way a
duration is shown to people in a message (`human_duration`). Pure: no I/O.
"""

from __future__ import annotations

import math
import re

#: The longest duration any setting takes (a week): beyond it a sleep or a timeout is a
#: mistake, and a number with hundreds of digits would overflow the clock's arithmetic.
MAX_DURATION = 7 * 86400.0
#: The longest duration text: the schema's `maxLength` for every duration.
MAX_TEXT = 32

#: The JSON Schema pattern for a duration; crds/ uses exactly this string.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(DURATION_PATTERN)
#: agent.toml also takes days ("7d" for [source] max_age); the desired state's grammar does not.
_WHOLE_WITH_DAYS = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, days: bool = False, maximum: float = MAX_DURATION) -> float:
    """Return the duration in seconds; raise ValueError saying what is accepted (a
    duration, at most `maximum` seconds).

    With `days`, "d" (86400 s) is a unit too, as in "7d" or "1d12h"."""
    whole = _WHOLE_WITH_DAYS if days else _WHOLE
    if not isinstance(text, str) or not whole.match(text) or len(text) > MAX_TEXT:
        units = "ms, s, m, h, d" if days else "ms, s, m, h"
        raise ValueError(
            f"{text[: MAX_TEXT + 8]!r} is not a duration: write a number with a unit, "
            f"such as 30s, 5m, 1h or 1h30m (units: {units})"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if not math.isfinite(seconds) or seconds > maximum:
        raise ValueError(f"{text!r} is longer than {format_duration(maximum)}, the most allowed")
    return seconds


def in_range(seconds: float, low: float, high: float) -> bool:
    """Whether a duration is within [low, high] (both ends allowed)."""
    return math.isfinite(seconds) and low <= seconds <= high


def format_duration(seconds: float) -> str:
    """The shortest duration string that parses back to `seconds` (whole ms)."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    parts: list[str] = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
            if not s:
                break
    return "".join(parts)


_SPAN_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def human_duration(seconds: float, *, compact: bool = False) -> str:
    """A duration for people, in whole seconds: its largest unit and the next one down
    when that is not zero.

    The default reads an age, which runs to days: "9d 4h", "3h 12m", "5m", "42s" (from a
    minute on, the seconds are left out). `compact` reads a wait or a soak as a spec
    writes it: "1h30m", "12m5s", "45s", without days (36 hours is "36h")."""
    units = _SPAN_UNITS[1:] if compact else _SPAN_UNITS
    rest = int(seconds)
    amounts: list[int] = []
    for _, size in units:
        amount, rest = divmod(rest, size)
        amounts.append(amount)
    first = next((i for i, amount in enumerate(amounts) if amount), len(units) - 1)
    parts = [f"{amounts[first]}{units[first][0]}"]
    following = first + 1
    if following < len(units) and amounts[following] and (compact or units[following][0] != "s"):
        parts.append(f"{amounts[following]}{units[following][0]}")
    return ("" if compact else " ").join(parts)
