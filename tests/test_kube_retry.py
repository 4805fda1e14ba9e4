"""Retry policy on fake time: which errors are retried, the backoff shape, Retry-After, giving up."""

from __future__ import annotations

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from checks.kube.retry import RetriesExhausted, RetryPolicy, call_with_retry


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def api_error(status: int, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return exc


def policy(t: FakeTime, **kw: object) -> RetryPolicy:
    return RetryPolicy(clock=t.clock, sleep=t.sleep, rng=lambda: 0.0, **kw)  # type: ignore[arg-type]


def flaky(errors: list[BaseException], result: str = "ok") -> tuple[list[int], object]:
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, fn


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_until_success(status: int) -> None:
    t = FakeTime()
    calls, fn = flaky([api_error(status), api_error(status)])
    assert call_with_retry(policy(t), fn, what="get x") == "ok"  # type: ignore[arg-type]
    assert calls[0] == 3
    assert t.sleeps == [0.2, 0.4]  # exponential from base_delay_s, no jitter with rng=0


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 422])
def test_answers_are_not_retried(status: int) -> None:
    t = FakeTime()
    calls, fn = flaky([api_error(status)])
    with pytest.raises(ApiException) as info:
        call_with_retry(policy(t), fn, what="get x")  # type: ignore[arg-type]
    assert info.value.status == status
    assert calls[0] == 1 and t.sleeps == []


def test_retry_after_seconds_is_honoured_and_capped() -> None:
    t = FakeTime()
    _, fn = flaky([api_error(429, "3"), api_error(429, "1000"), api_error(429, "Wed, 21 Oct 2015 07:28:00 GMT")])
    call_with_retry(policy(t, max_delay_s=10.0), fn, what="list pods")  # type: ignore[arg-type]
    # 3 s as asked; 1000 s capped at max_delay_s; an HTTP-date falls back to our own backoff (3rd try: 0.8 s)
    assert t.sleeps == [3.0, 10.0, 0.8]


def test_connection_errors_retried_only_when_enabled() -> None:
    t = FakeTime()
    _, fn = flaky([urllib3.exceptions.ProtocolError("reset"), ConnectionRefusedError()])
    assert call_with_retry(policy(t), fn, what="get x") == "ok"  # type: ignore[arg-type]
    _, fn2 = flaky([ConnectionRefusedError()])
    with pytest.raises(ConnectionRefusedError):
        call_with_retry(policy(t, retry_connection_errors=False), fn2, what="get x")  # type: ignore[arg-type]


def test_gives_up_after_attempts_naming_the_call_and_last_error() -> None:
    t = FakeTime()
    calls, fn = flaky([api_error(503)] * 10)
    with pytest.raises(RetriesExhausted) as info:
        call_with_retry(policy(t, attempts=4), fn, what="list resourceslices")  # type: ignore[arg-type]
    assert calls[0] == 4
    assert "list resourceslices" in str(info.value) and "HTTP 503" in str(info.value)
    assert isinstance(info.value.__cause__, ApiException)


def test_backoff_is_capped_and_jittered_up_only() -> None:
    t = FakeTime()
    p = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, jitter=0.5, clock=t.clock, sleep=t.sleep,
                    rng=lambda: 0.999)
    delays = [p.delay_for(n) for n in range(1, 7)]
    assert delays[0] == pytest.approx(1.4995)
    assert all(d <= 5.0 for d in delays) and delays[-1] == 5.0


def test_deadline_stops_retrying_before_attempts_run_out() -> None:
    t = FakeTime()
    calls, fn = flaky([api_error(503)] * 10)
    with pytest.raises(RetriesExhausted):
        call_with_retry(policy(t, attempts=100, base_delay_s=1.0, deadline_s=5.0), fn,  # type: ignore[arg-type]
                        what="x")
    assert sum(t.sleeps) <= 5.0 and calls[0] < 10
