"""Calling a dependency that may be down: retries inside a time budget and the event's
deadline, a circuit breaker.

The seed's examples 7 and 8, made to fit a function that must answer its broker in time:
retries back off exponentially with jitter but never past the call's budget nor the
deadline of the event being handled (`deadline`, set by the runtime per delivery), and a
breaker that has seen too many failures fails fast with 503 until its recovery timeout,
so a dead SMTP server does not hold every delivery for the whole budget.

What is retried is not decided here: each dependency's entry in `nextup.dependencies`
classifies what it raises (`Verdict`); `call` only acts on that verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from nextup.errors import EventError, Unavailable

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; lets one trial call through
    after `recovery_timeout` seconds, closing again if it succeeds."""

    name: str
    failure_threshold: int = 5
    recovery_timeout: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_running: bool = field(default=False, repr=False)

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.recovery_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_after(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.recovery_timeout - (self.clock() - self.opened_at))

    def before_call(self) -> None:
        """Raise Unavailable when the breaker is open, or half-open with a trial under way."""
        state = self.state
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._trial_running):
            raise Unavailable(
                f"{self.name} is unavailable (circuit open)",
                field=self.name,
                retry_after=max(1.0, self.retry_after()),
            )
        if state is BreakerState.HALF_OPEN:
            self._trial_running = True

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def inconclusive(self) -> None:
        """A call ended without saying whether the dependency works (it refused one
        recipient, was cancelled, or hit a bug of ours): no failure counted, and a trial's
        slot is freed for the next call, so the breaker cannot stay half-open with nobody
        trying."""
        self._trial_running = False

    def failed(self) -> None:
        self._trial_running = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            # A failed trial re-opens for a full recovery period.
            self.opened_at = self.clock()


@dataclass(frozen=True)
class RetryPolicy:
    budget: float = 10.0  # seconds for all attempts together
    base_delay: float = 0.05
    max_delay: float = 2.0
    max_attempts: int = 6


class Verdict(StrEnum):
    """What one failed call says about the dependency it called."""

    # Away (down, throttling, timed out): counted against its breaker, retried in budget.
    TRANSIENT = "transient"
    # A definite answer (a lost compare-and-set, a missing table, a refusal): the
    # dependency is there. Not retried, and it closes a half-open breaker.
    PERMANENT = "permanent"
    # Nothing about the dependency (one recipient's refusal, a cancellation, a bug of
    # ours): not retried, not counted, and a half-open breaker's trial slot is freed.
    INCONCLUSIVE = "inconclusive"


Classify = Callable[[BaseException], Verdict]


def by_type(transient: tuple[type[BaseException], ...]) -> Classify:
    """The classification every dependency shares, given the exception types that mean it
    is away: those are transient, any other `EventError` is a definite answer, and the
    rest says nothing about the dependency."""

    def classify(exc: BaseException) -> Verdict:
        if isinstance(exc, transient):
            return Verdict.TRANSIENT
        if isinstance(exc, EventError):
            return Verdict.PERMANENT
        return Verdict.INCONCLUSIVE

    return classify


# -- the deadline of the event being handled -----------------------------------------------

_deadline: ContextVar[float | None] = ContextVar("nextup_deadline", default=None)


def deadline() -> float | None:
    """The `time.monotonic()` instant by which the event being handled must be answered
    (None outside a delivery). Tasks started while handling it inherit it."""
    return _deadline.get()


def remaining(default: float) -> float:
    """Seconds left before the deadline, or `default` when there is none."""
    until = _deadline.get()
    return default if until is None else until - time.monotonic()


def set_deadline(seconds: float) -> Token[float | None]:
    """From now on in this context (and the tasks it starts), every retry loop stops
    `seconds` from now: the runtime sets it per delivery. `reset_deadline` undoes it."""
    return _deadline.set(time.monotonic() + seconds)


def reset_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


@contextlib.contextmanager
def deadline_in(seconds: float) -> Iterator[float]:
    """`set_deadline` for a block: the deadline it set."""
    token = set_deadline(seconds)
    try:
        yield _deadline.get()  # type: ignore[misc]
    finally:
        reset_deadline(token)


@contextlib.contextmanager
def deadline_at(instant: float) -> Iterator[float]:
    """Inside the block, retries stop at `instant` (a `time.monotonic()` value) or at the
    deadline already set, whichever comes first: a part of a delivery that must leave
    time for the rest."""
    current = _deadline.get()
    until = instant if current is None else min(current, instant)
    token = _deadline.set(until)
    try:
        yield until
    finally:
        _deadline.reset(token)


class DeadlineExceeded(Unavailable):
    """The event's deadline came before the dependency answered: 503, so the broker
    delivers again later rather than timing the delivery out itself."""


async def call(
    operation: Callable[[], Awaitable[T]],
    *,
    breaker: CircuitBreaker | None,
    policy: RetryPolicy,
    transient: tuple[type[BaseException], ...] = (),
    classify: Classify | None = None,
    deadline: float | None = None,
    bounded: bool = True,
    name: str | None = None,
) -> T:
    """Run `operation`, retrying transient failures until it succeeds, its attempts or
    budget are spent, or the event's deadline comes.

    `classify` (a dependency's, from `nextup.dependencies`) says what each failure means;
    without it, `transient` lists the types that mean the dependency is away. An attempt
    that runs out of time is transient. `deadline` (a `time.monotonic()` instant) defaults
    to the event's (`deadline()`); none is made once it has passed.

    Raises Unavailable (503) when the dependency stays down; any other exception passes
    through at once, since retrying a client's mistake cannot fix it. `bounded=False`
    skips the per-attempt timeout, for operations that cannot be interrupted anyway (a
    blocking call made on the event loop) and should not pay for a task each. Without a
    breaker (`None`), failures are counted nowhere.
    """
    judge = classify or by_type(transient)
    label = name or (breaker.name if breaker is not None else "dependency")
    start = time.monotonic()
    stop = start + policy.budget
    until = _deadline.get() if deadline is None else deadline
    if until is not None:
        stop = min(stop, until)
    attempt = 0
    while True:
        if time.monotonic() >= stop and until is not None and stop == until:
            raise DeadlineExceeded(
                f"{label}: the event's deadline has passed"
                + ("" if attempt == 0 else f" after {attempt} attempts"),
                field=label,
                retry_after=max(1.0, breaker.retry_after() if breaker else 0.0),
            )
        if breaker is not None:
            breaker.before_call()
        attempt += 1
        try:
            if bounded:
                result = await asyncio.wait_for(
                    operation(), timeout=max(0.01, stop - time.monotonic())
                )
            else:
                result = await operation()
        except BaseException as exc:
            # The attempt's own time running out is transient, whatever the dependency.
            verdict = Verdict.TRANSIENT if isinstance(exc, TimeoutError) else judge(exc)
            if verdict is Verdict.PERMANENT:
                if breaker is not None:
                    breaker.succeeded()
                raise
            if verdict is Verdict.INCONCLUSIVE:
                if breaker is not None:
                    breaker.inconclusive()
                raise
            if breaker is not None:
                breaker.failed()
            last = exc
        else:
            if breaker is not None:
                breaker.succeeded()
            return result
        delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter, so retries from many functions spread out
        if attempt >= policy.max_attempts or time.monotonic() + delay >= stop:
            if isinstance(last, Unavailable):
                raise last
            raise Unavailable(
                f"{label} is unavailable: {_describe(last)}",
                field=label,
                retry_after=max(1.0, breaker.retry_after() if breaker else 0.0),
            ) from last
        await asyncio.sleep(delay)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
