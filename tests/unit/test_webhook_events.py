"""The webhook verdict as a table: who signed, is it a push, is it our branch."""

from __future__ import annotations

import json

import pytest

from reconciler.core.webhook_events import Ignored, Push, Rejected, judge, sign

SECRET = b"s3cret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
OTHER_BRANCH = json.dumps({"ref": "refs/heads/dev", "after": "b" * 40}).encode()
TAG = json.dumps({"ref": "refs/tags/v1", "after": "c" * 40}).encode()


def github(body: bytes, secret: bytes = SECRET, event: str = "push") -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={sign(secret, body)}"}


def gitea(body: bytes, secret: bytes = SECRET, event: str = "push") -> dict[str, str]:
    return {"X-Gitea-Event": event, "X-Gitea-Signature": sign(secret, body)}


def gitlab(token: str = SECRET.decode(), event: str = "Push Hook") -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token}


CASES = [
    ("github push", github(BODY), BODY, Push("github", "refs/heads/main", "a" * 40)),
    ("gitea push", gitea(BODY), BODY, Push("gitea", "refs/heads/main", "a" * 40)),
    ("gitlab push", gitlab(), BODY, Push("gitlab", "refs/heads/main", "a" * 40)),
    (
        "header names in any case",
        {k.lower(): v for k, v in github(BODY).items()},
        BODY,
        Push("github", "refs/heads/main", "a" * 40),
    ),
    (
        "uppercase hex digest",
        {"X-Hub-Signature-256": "sha256=" + sign(SECRET, BODY).upper()},
        BODY,
        Push("github", "refs/heads/main", "a" * 40),
    ),
    (
        "no signature at all",
        {"X-GitHub-Event": "push"},
        BODY,
        Rejected(
            "no signature: send X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea) "
            "or X-Gitlab-Token (GitLab)"
        ),
    ),
    (
        "github signed with another secret",
        github(BODY, b"wrong"),
        BODY,
        Rejected("X-Hub-Signature-256 does not match"),
    ),
    (
        "github signature of another body",
        github(OTHER_BRANCH),
        BODY,
        Rejected("X-Hub-Signature-256 does not match"),
    ),
    (
        "github sha1 scheme",
        {"X-Hub-Signature-256": "sha1=" + sign(SECRET, BODY)},
        BODY,
        Rejected("X-Hub-Signature-256 does not match"),
    ),
    (
        "gitea signed with another secret",
        gitea(BODY, b"wrong"),
        BODY,
        Rejected("X-Gitea-Signature does not match"),
    ),
    ("gitlab wrong token", gitlab("nope"), BODY, Rejected("X-Gitlab-Token does not match")),
    (
        "gitlab token with non-ascii",
        gitlab("s3crét"),
        BODY,
        Rejected("X-Gitlab-Token does not match"),
    ),
    (
        "github ping",
        github(BODY, event="ping"),
        BODY,
        Ignored("github", "ping event is not a push"),
    ),
    (
        "gitlab tag push hook",
        gitlab(event="Tag Push Hook"),
        TAG,
        Ignored("gitlab", "Tag Push Hook event is not a push"),
    ),
    (
        "push to another branch",
        github(OTHER_BRANCH),
        OTHER_BRANCH,
        Ignored("github", "a push to refs/heads/dev, not refs/heads/main"),
    ),
    (
        "push of a tag",
        gitea(TAG),
        TAG,
        Ignored("gitea", "a push to refs/tags/v1, not refs/heads/main"),
    ),
    (
        "signed but not JSON",
        github(b"not json"),
        b"not json",
        Rejected("the body is not JSON", status=400),
    ),
    (
        "signed JSON without a ref",
        github(b"{}"),
        b"{}",
        Rejected("the push event has no ref", status=400),
    ),
    (
        "signed push without after",
        github(b'{"ref": "refs/heads/main"}'),
        b'{"ref": "refs/heads/main"}',
        Push("github", "refs/heads/main", ""),
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_verdict(headers: dict[str, str], body: bytes, expected: object) -> None:
    assert judge(headers, body, SECRET, "main") == expected


def test_an_empty_secret_refuses_everything_even_a_matching_signature() -> None:
    verdict = judge(github(BODY, b""), BODY, b"", "main")
    assert verdict == Rejected("no webhook secret is configured", status=503)


def test_authentication_comes_before_the_body_is_read() -> None:
    # A wrong signature on garbage is a 401 (not a 400): nothing of the body is believed.
    assert judge(github(b"x", b"wrong"), b"\xff\xfe", SECRET, "main").status == 401


def test_rejections_are_401_and_pushes_are_202() -> None:
    assert judge({}, BODY, SECRET, "main").status == 401
    assert judge(github(BODY), BODY, SECRET, "main").status == 202
