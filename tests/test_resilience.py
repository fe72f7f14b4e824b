"""Retries inside a budget and the circuit breaker (the seed's examples 7 and 8)."""

from __future__ import annotations

import asyncio
import time

import pytest

from nextup.errors import BadRequest, Unavailable
from nextup.resilience import BreakerState, CircuitBreaker, RetryPolicy, call


class Clock:
    """A hand-driven monotonic clock: the breaker's notion of time, nothing else."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_fails_fast_and_recovers():
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=3, recovery_timeout=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.failed()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(Unavailable) as caught:
        breaker.before_call()
    assert caught.value.field == "smtp"
    assert 1 <= caught.value.retry_after <= 10
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the one trial call
    with pytest.raises(Unavailable):
        breaker.before_call()  # no second call while the trial runs
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


def test_failed_trial_reopens_for_a_full_period():
    clock = Clock()
    breaker = CircuitBreaker("store", failure_threshold=1, recovery_timeout=5, clock=clock)
    breaker.failed()
    clock.now += 5
    breaker.before_call()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert breaker.state is BreakerState.OPEN


class Flaky:
    def __init__(self, failures: int, exc: type[BaseException] = ConnectionError) -> None:
        self.failures = failures
        self.calls = 0
        self.exc = exc

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc("down")
        return "ok"


def run(coro):
    return asyncio.run(coro)


FAST = RetryPolicy(budget=2.0, base_delay=0.001, max_delay=0.01, max_attempts=6)


def test_transient_failures_are_retried_until_success():
    op = Flaky(3)
    breaker = CircuitBreaker("sink", failure_threshold=10)
    assert run(call(op, breaker=breaker, policy=FAST, transient=(ConnectionError,))) == "ok"
    assert op.calls == 4
    assert breaker.failures == 0, "a success resets the count"


def test_client_errors_are_not_retried():
    op = Flaky(5, exc=BadRequest)
    with pytest.raises(BadRequest):
        run(call(op, breaker=CircuitBreaker("x"), policy=FAST, transient=(ConnectionError,)))
    assert op.calls == 1


def test_gives_up_with_503_when_attempts_or_budget_run_out():
    op = Flaky(100)
    with pytest.raises(Unavailable) as caught:
        run(
            call(
                op,
                breaker=CircuitBreaker("smtp", failure_threshold=100),
                policy=FAST,
                transient=(ConnectionError,),
            )
        )
    assert op.calls == FAST.max_attempts
    assert caught.value.field == "smtp" and "down" in caught.value.error
    slow = RetryPolicy(budget=0.3, base_delay=0.05, max_delay=0.1, max_attempts=1000)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        run(
            call(
                Flaky(100),
                breaker=CircuitBreaker("smtp", failure_threshold=1000),
                policy=slow,
                transient=(ConnectionError,),
            )
        )
    assert time.monotonic() - started < 1.0, "never past the budget"


def test_hung_dependency_times_out_within_the_budget():
    async def hang() -> None:
        await asyncio.Event().wait()

    policy = RetryPolicy(budget=0.2, base_delay=0.01, max_delay=0.01, max_attempts=3)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        run(
            call(
                hang,
                breaker=CircuitBreaker("backend", failure_threshold=100),
                policy=policy,
                transient=(),
            )
        )
    assert time.monotonic() - started < 1.0


def test_open_breaker_does_not_call_the_dependency():
    breaker = CircuitBreaker("smtp", failure_threshold=2, recovery_timeout=60)
    op = Flaky(100)
    with pytest.raises(Unavailable):
        run(call(op, breaker=breaker, policy=FAST, transient=(ConnectionError,)))
    assert op.calls == 2, "opened after two failures"
    with pytest.raises(Unavailable) as caught:
        run(call(op, breaker=breaker, policy=FAST, transient=(ConnectionError,)))
    assert op.calls == 2
    assert "circuit open" in caught.value.error


@pytest.mark.parametrize(
    ("raised", "state_after"),
    [
        # The dependency answered (a refusal, a lost compare-and-set): it is there.
        (BadRequest("no", field="x"), BreakerState.CLOSED),
        # Says nothing of the dependency: the trial slot is given back, still half-open.
        (KeyError("bug"), BreakerState.HALF_OPEN),
        (asyncio.CancelledError(), BreakerState.HALF_OPEN),
    ],
)
def test_a_half_open_trial_that_ends_in_a_non_transient_error_never_wedges_the_breaker(
    raised, state_after
):
    """A trial call that ended in anything but success or a transient failure used to keep
    its slot for ever: every later call answered "circuit open"."""
    clock = Clock()
    breaker = CircuitBreaker("store", failure_threshold=1, recovery_timeout=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN

    async def trial() -> None:
        raise raised

    with pytest.raises(type(raised)):
        asyncio.run(call(trial, breaker=breaker, policy=RetryPolicy(), transient=(OSError,)))
    assert breaker.state is state_after

    async def works() -> str:
        return "ok"

    # The next call is let through (as the trial, or with the breaker closed).
    assert asyncio.run(call(works, breaker=breaker, policy=RetryPolicy(), transient=())) == "ok"
    assert breaker.state is BreakerState.CLOSED


def test_an_answer_that_is_no_failure_neither_counts_nor_wedges_the_breaker():
    """A call that ends in a non-transient error (a refused recipient, a conflict) says
    nothing about the dependency being down: no failure is counted, and a half-open
    breaker's trial slot is freed, or no call would ever be let through again."""
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=2, recovery_timeout=5, clock=clock)
    refused = Flaky(100, exc=BadRequest)
    with pytest.raises(Unavailable):
        run(call(Flaky(100), breaker=breaker, policy=FAST, transient=(ConnectionError,)))
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    with pytest.raises(BadRequest):  # the trial: the dependency answered, with a refusal
        run(call(refused, breaker=breaker, policy=FAST, transient=(ConnectionError,)))
    assert run(call(Flaky(0), breaker=breaker, policy=FAST, transient=(ConnectionError,))) == "ok"
    assert breaker.state is BreakerState.CLOSED
    breaker.failed()
    for _ in range(5):
        with pytest.raises(BadRequest):
            run(call(refused, breaker=breaker, policy=FAST, transient=(ConnectionError,)))
    # A refusal is an answer: the dependency is there, so the count starts again.
    assert breaker.failures == 0 and breaker.state is BreakerState.CLOSED


def test_a_cancelled_trial_frees_the_breaker():
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=1, recovery_timeout=5, clock=clock)
    breaker.failed()
    clock.now += 5

    async def cancelled_trial() -> None:
        task = asyncio.ensure_future(
            call(
                lambda: asyncio.Event().wait(),
                breaker=breaker,
                policy=FAST,
                transient=(ConnectionError,),
            )
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancelled_trial())
    assert run(call(Flaky(0), breaker=breaker, policy=FAST, transient=(ConnectionError,))) == "ok"
