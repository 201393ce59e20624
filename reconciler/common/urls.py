"""URLs as a user may read them: the password of a URL's user info never shown.

Owns `redact_url` and `redact`, used wherever a remote's URL reaches a message,
a status or a log - by the helper's gitRemote check (this package is the
standard-library island) and by the agent's git source.

Must not: change what is fetched; it only shapes what is shown.
"""

from __future__ import annotations


def redact_url(url: str) -> str:
    """`url` with the password of its user info replaced by `***` (for display)."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{path}"


def redact(text: str, url: str) -> str:
    """`text` with `url` and its password (wherever they appear) redacted."""
    shown = redact_url(url)
    if shown == url:
        return text
    password = url.split("://", 1)[1].partition("/")[0].rpartition("@")[0].split(":", 1)[1]
    text = text.replace(url, shown)
    return text.replace(password, "***") if password else text
