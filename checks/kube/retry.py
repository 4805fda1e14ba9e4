"""Retrying API calls that failed for reasons that go away by themselves.

A real API server under load answers 429 (with ``Retry-After``), restarts give 5xx and dropped connections;
none of these says anything about the driver under test, so a check must not fail on them. Everything else
(404, 409, 422, ...) is an answer and is raised at once. Time is injected (``clock``/``sleep``) so tests run
the backoff on fake time.
"""

from __future__ import annotations

import http.client
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

#: HTTP statuses that mean "try again later" rather than "no".
DEFAULT_RETRIABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Exceptions that mean the connection failed before an answer came.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    socket.timeout,
    TimeoutError,
)


class RetriesExhausted(Exception):
    """Every attempt failed with a retriable error; the message names the call and the last error."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempts; last error: {describe_error(last)}")
        self.what = what
        self.attempts = attempts
        self.last = last


def describe_error(exc: BaseException) -> str:
    """A short description of an API error without its body (bodies may echo objects with secrets)."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    return f"{exc.__class__.__name__}: {exc}"


def _retry_after_seconds(exc: BaseException) -> float | None:
    """The ``Retry-After`` header in seconds, when the server sent one in delta-seconds form."""
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None  # HTTP-date form: the API server never sends it; fall back to our own backoff.
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried."""

    attempts: int = 6
    """Total tries including the first; 1 means no retry."""
    base_delay_s: float = 0.2
    """Delay before the second try; doubles each time."""
    max_delay_s: float = 10.0
    """Cap of one delay (also caps a server's ``Retry-After``, so a bogus header cannot stall a run)."""
    jitter: float = 0.2
    """Fraction of the delay added at random (0..jitter), so parallel clients do not retry in lockstep."""
    retriable_statuses: frozenset[int] = DEFAULT_RETRIABLE_STATUSES
    """HTTP statuses retried; others are raised at once."""
    retry_connection_errors: bool = True
    """Whether connection failures (refused, reset, timed out) are retried."""
    deadline_s: float | None = None
    """Give up once this much time has passed since the first try, whatever ``attempts`` says."""
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    """Monotonic time source; tests pass a fake."""
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    """How to wait between tries; tests pass a fake that advances their clock."""
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    """Uniform [0, 1) source for the jitter."""

    def is_retriable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a transient failure this policy retries."""
        if isinstance(exc, ApiException):
            # status 0 = the client failed before any HTTP answer (e.g. a reset mid-body)
            return exc.status in self.retriable_statuses or (exc.status == 0 and self.retry_connection_errors)
        return self.retry_connection_errors and isinstance(exc, CONNECTION_ERRORS)

    def delay_for(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based); ``Retry-After`` wins when given."""
        retry_after = _retry_after_seconds(exc) if exc is not None else None
        if retry_after is not None:
            return min(retry_after, self.max_delay_s)
        base = min(self.base_delay_s * (2 ** (attempt - 1)), self.max_delay_s)
        return float(min(base * (1.0 + self.jitter * self.rng()), self.max_delay_s))


#: What callers get when they pass nothing.
DEFAULT_POLICY = RetryPolicy()
#: For calls that must not be retried (e.g. a non-idempotent create whose first try may have landed).
NO_RETRY = RetryPolicy(attempts=1)


def call_with_retry(policy: RetryPolicy, fn: Callable[[], T], *, what: str) -> T:
    """Call ``fn`` until it returns, retrying transient failures per ``policy``.

    Non-retriable errors propagate unchanged (callers match on ``ApiException.status``); when the retries run
    out, :class:`RetriesExhausted` names ``what`` and the last error, chained to it.
    """
    started = policy.clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not policy.is_retriable(exc):
                raise
            if attempt >= policy.attempts:
                raise RetriesExhausted(what, attempt, exc) from exc
            delay = policy.delay_for(attempt, exc)
            if policy.deadline_s is not None and policy.clock() + delay - started > policy.deadline_s:
                raise RetriesExhausted(what, attempt, exc) from exc
            policy.sleep(delay)
