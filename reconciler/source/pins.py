"""A `spec.revision` pin that git could never resolve: an invalid spec, as a type.

Owns `PinRefused` (TerminalError, reason InvalidSpec: retrying cannot help, a
new commit must fix the spec) and `valid_ref`, which asks libgit2 whether a ref
name is one git accepts (the rules of `git check-ref-format`). The CRD's
pattern for `revision` refuses the same names, so `pullnix validate` says so
first; this is the source layer's own guard, never a refspec libgit2 refuses.

Must not: fetch.
"""

from __future__ import annotations

import pygit2

from reconciler.core.errors import TerminalError


class PinRefused(TerminalError):
    """spec.revision is neither a commit id nor a tag name git accepts."""

    reason = "InvalidSpec"

    def __init__(self, pin: str) -> None:
        super().__init__(
            f"spec.revision {pin!r} is neither a commit id nor a tag name git accepts "
            "(git check-ref-format: no component starting with '.', no '..', '//' or "
            "'@{', not ending in '/', '.' or '.lock'); pin a commit id such as "
            "3f2a1c9e or a tag such as v1.2.0"
        )


def valid_ref(name: str) -> bool:
    """Whether git accepts `name` (a full ref, such as refs/tags/v1) as a ref name."""
    return bool(pygit2.reference_is_valid_name(name))
