"""Calling a dependency that may be down: retries inside a time budget, a circuit breaker.

The seed's examples 7 and 8, made to fit a function that must answer its broker in time:
retries back off exponentially with jitter but never past the event's time budget, and a
breaker that has seen too many failures fails fast with 503 until its recovery timeout,
so a dead SMTP server does not hold every delivery for the whole budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
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


async def call(
    operation: Callable[[], Awaitable[T]],
    *,
    breaker: CircuitBreaker,
    policy: RetryPolicy,
    transient: tuple[type[BaseException], ...],
    deadline: float | None = None,
    bounded: bool = True,
) -> T:
    """Run `operation`, retrying transient failures until it succeeds or the budget is spent.

    Raises Unavailable (503) when the dependency stays down; any other exception passes
    through at once, since retrying a client's mistake cannot fix it. `bounded=False`
    skips the per-attempt timeout, for operations that cannot be interrupted anyway (a
    blocking call made on the event loop) and should not pay for a task each.
    """
    start = time.monotonic()
    stop = start + policy.budget if deadline is None else min(deadline, start + policy.budget)
    attempt = 0
    while True:
        breaker.before_call()
        attempt += 1
        try:
            if bounded:
                result = await asyncio.wait_for(
                    operation(), timeout=max(0.01, stop - time.monotonic())
                )
            else:
                result = await operation()
        except transient as exc:
            breaker.failed()
            last = exc
        except TimeoutError as exc:
            breaker.failed()
            last = exc
        except EventError:
            # A definite answer (a lost compare-and-set, a missing table, a refusal): the
            # dependency is there. Not retried, and it closes a half-open breaker.
            breaker.succeeded()
            raise
        except BaseException:
            breaker.inconclusive()
            raise
        else:
            breaker.succeeded()
            return result
        delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter, so retries from many functions spread out
        if attempt >= policy.max_attempts or time.monotonic() + delay >= stop:
            if isinstance(last, Unavailable):
                raise last
            raise Unavailable(
                f"{breaker.name} is unavailable: {_describe(last)}",
                field=breaker.name,
                retry_after=max(1.0, breaker.retry_after()),
            ) from last
        await asyncio.sleep(delay)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
