"""How the source layer retries: exponential backoff with jitter and a cap, transient only.

Owns the retry policy of network operations (tenacity). A TransientError is
retried after min(initial * 2**n, max_wait) seconds plus a random 0..`jitter`
seconds (so machines that failed together do not retry together), until
`attempts` tries or `deadline` seconds have passed; then the last error is
raised as is. A TerminalError is raised at once.

Must not: classify errors (reconciler.source.transport does) or sleep anywhere
but here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from reconciler.core.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5
    deadline: float = 120.0
    connect_timeout: float = 10.0  # libgit2 connect timeout, seconds
    io_timeout: float = 30.0  # libgit2 read/write timeout, seconds


def run_with_retries(policy: RetryPolicy, operation: Callable[[], T]) -> tuple[T, int]:
    """Run `operation` under `policy`; return its result and how many attempts it took."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline),
        wait=wait_exponential(multiplier=policy.initial, max=policy.max_wait)
        + wait_random(0, policy.jitter),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    attempts = 0

    def counted() -> T:
        nonlocal attempts
        attempts += 1
        return operation()

    return retrying(counted), attempts
