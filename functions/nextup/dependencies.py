"""Every dependency a function talks to, declared once: how it is retried, whether it has a
circuit breaker, what counts as transient for it, and how the health function probes it.

| name | attempts | breaker | transient (besides transport errors, timeouts) | probe |
| --- | --- | --- | --- | --- |
| `store` | 6 | shared | `StoreUnavailable`; DynamoDB throttling, 5xx | ping |
| `smtp` | 6 | shared | the server's: refused, silent, dropped, 421, 530 | NOOP |
| `webhooks` | 1 | none | one recipient's: 5xx, 408, 425, 429 | none |
| `sink` | 6 | shared | 5xx, 404, 408, 409, 425, 429 | OPTIONS |
| `dapr` | 6 | shared | every non-2xx | /healthz |
| `backend` | 6 | shared | 5xx, 408, 429 | GET |
| `oidc` | 1 | none | 5xx, 429 (the cached keys serve meanwhile) | none |

Retries back off from 0.05 s, doubling to 2 s, with jitter, inside the call's budget and
the event's deadline (`nextup.resilience`). `StoreNotReady` (a missing table) is not
transient: a person has to act, and the answer says how.

Webhooks deliberately have no shared breaker and no retries inside a delivery: each is a
server of its own, and one user's failing webhook must never hold back anyone else's
reminders. A failure is that reminder's, retried on its own backoff.

What the adapters raise is read through the entry's `classify` (exceptions, for
`resilience.call`) and `transient_status` (HTTP or SMTP reply codes, for the adapters):
nothing else decides what is transient.

Settings (`nextup.config`, prefix `NEXTUP_`): `NEXTUP_RETRY_BUDGET`,
`NEXTUP_BREAKER_FAILURES` and `NEXTUP_BREAKER_RECOVERY` are every shared dependency's
budget, threshold and reset; one dependency's are overridden with
`NEXTUP_RETRY_<NAME>_ATTEMPTS`, `..._BUDGET`, `..._DELAY` (the first backoff),
`..._MAX_DELAY`, and `NEXTUP_BREAKER_<NAME>_FAILURES`, `..._RECOVERY`, NAME being the
dependency's name in capitals (e.g. `NEXTUP_RETRY_SMTP_ATTEMPTS=3`).

This module imports nothing but `errors` and `resilience`: the adapters read their status
rules from it, and a cold start pays for no client library it does not use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nextup.errors import EventError, Unavailable
from nextup.resilience import CircuitBreaker, Classify, RetryPolicy, Verdict, by_type

if TYPE_CHECKING:
    from nextup.config import Settings


@dataclass(frozen=True)
class Backoff:
    """How often and how fast a dependency is retried inside one call.

    `budget` None: the settings' `retry_budget` (NEXTUP_RETRY_BUDGET)."""

    attempts: int = 6
    delay: float = 0.05  # before the first retry; doubled each time, with jitter
    max_delay: float = 2.0
    budget: float | None = None


@dataclass(frozen=True)
class Breaker:
    """A breaker shared by every call to the dependency in one process.

    None: the settings' `breaker_failures` and `breaker_recovery`."""

    failures: int | None = None
    recovery: float | None = None


@dataclass(frozen=True)
class Statuses:
    """Which reply codes mean "not now" (transient): every 5xx when `server_errors`, every
    failure when `every_failure`, and `retried`; `errors`, error codes by name (DynamoDB's).
    Any other failure is permanent."""

    retried: frozenset[int] = frozenset()
    server_errors: bool = True
    every_failure: bool = False
    errors: frozenset[str] = frozenset()

    def transient(self, status: int) -> bool:
        if 200 <= status < 300:
            return False
        if self.every_failure or status in self.retried:
            return True
        return self.server_errors and status >= 500


@dataclass(frozen=True, kw_only=True)
class Dependency:
    """One dependency, all that is decided about it."""

    name: str = dataclasses.field(kw_only=False)
    retry: Backoff
    breaker: Breaker | None  # None: no shared breaker
    classify: Classify  # an exception from a call -> what it says of the dependency
    statuses: Statuses  # a reply code -> transient or permanent (for the adapters)
    timeout: float | None  # seconds for one request (None: see the entry)
    probe: str | None  # the Services method the health function runs, or None
    # Whether this process uses it, for the health function's report (None: never reported).
    used: Callable[[Settings], bool] | None

    def transient_status(self, status: int) -> bool:
        return self.statuses.transient(status)

    def verdict(self, exc: BaseException) -> Verdict:
        return self.classify(exc)


def _store(exc: BaseException) -> Verdict:
    # Imported here: by the time the store fails, it has been opened (and its errors
    # imported); the health function and a cold start need not pay for it.
    from nextup.store.errors import StoreUnavailable

    return by_type((StoreUnavailable,))(exc)


_AWAY = by_type((Unavailable,))


def _recipient(exc: BaseException) -> Verdict:
    """Webhooks: every failure is one recipient's, never the dependency's (there is no
    shared one), so nothing a webhook raises is counted or retried inside the delivery."""
    return Verdict.PERMANENT if isinstance(exc, EventError) else Verdict.INCONCLUSIVE


STORE = Dependency(
    "store",
    retry=Backoff(),
    breaker=Breaker(),
    classify=_store,
    # DynamoDB: throttling, busy, or the service's own fault (`store.dynamodb.store_error`
    # makes them StoreUnavailable, a missing table StoreNotReady, the rest StoreError).
    statuses=Statuses(
        errors=frozenset(
            {
                "ProvisionedThroughputExceededException",
                "ThrottlingException",
                "RequestLimitExceeded",
                "InternalServerError",
                "ServiceUnavailable",
                "LimitExceededException",
                "TransactionInProgressException",
            }
        )
    ),
    timeout=None,  # a local SQLite store is called on the event loop, uninterrupted
    probe="check_store",
    used=lambda settings: True,
)
SMTP = Dependency(
    "smtp",
    retry=Backoff(),
    breaker=Breaker(),
    # `notify.Mailer` raises Unavailable for the server itself; a recipient's refusal
    # (PermanentFailure, RecipientUnavailable) says the server is up, for nobody else.
    classify=_AWAY,
    # Replies that are the server's, for every recipient: 421 (closing), 530 (not logged
    # in). Other 4xx and 5xx to RCPT or DATA are one recipient's (`notify.classify_smtp`).
    statuses=Statuses(frozenset({421, 530}), server_errors=False),
    timeout=10.0,
    probe="check_smtp",
    used=lambda settings: bool(settings.smtp_url),
)
WEBHOOKS = Dependency(
    "webhooks",
    retry=Backoff(attempts=1),  # a failed webhook is retried on its reminder's backoff
    breaker=None,  # one user's webhook must never stop anyone else's reminders
    classify=_recipient,
    # RecipientUnavailable (later, for this reminder alone); any other failure is
    # PermanentFailure.
    statuses=Statuses(frozenset({408, 425, 429})),
    timeout=None,  # one timeout for the whole POST: NEXTUP_WEBHOOK_TIMEOUT
    probe=None,
    used=None,
)
SINK = Dependency(
    "sink",
    retry=Backoff(),
    breaker=Breaker(),
    classify=_AWAY,
    # A broker ingress answers these while it is starting, overloaded or being rolled.
    statuses=Statuses(frozenset({404, 408, 409, 425, 429})),
    timeout=5.0,
    probe="check_sink",
    used=lambda settings: bool(settings.sink),
)
DAPR = Dependency(
    "dapr",
    retry=Backoff(),
    breaker=Breaker(),
    classify=_AWAY,
    # The sidecar answers 4xx for a pubsub component it does not have yet as well as for
    # a broker that is down: nothing is lost by trying again.
    statuses=Statuses(every_failure=True),
    timeout=5.0,
    probe="check_dapr",
    used=lambda settings: bool(settings.dapr_http_port),
)
BACKEND = Dependency(
    "backend",
    retry=Backoff(),
    breaker=Breaker(),
    classify=_AWAY,
    statuses=Statuses(frozenset({408, 429})),  # 409 to a create: it has the task, done
    timeout=5.0,
    probe="check_backend",
    used=lambda settings: bool(settings.backend_url),
)
OIDC = Dependency(
    "oidc",
    # The discovery document and JWKS, fetched once per TTL and on an unknown kid; while
    # the issuer is away the cached keys serve, so one attempt and no breaker.
    retry=Backoff(attempts=1),
    breaker=None,
    classify=_AWAY,
    # Said to be transient (Retry-After 2 s); any other answer without a usable document
    # is Unavailable too, as no token can be checked without it.
    statuses=Statuses(frozenset({429})),
    timeout=5.0,
    probe=None,  # checked by every authenticated event, not probed
    used=None,
)

DEPENDENCIES: dict[str, Dependency] = {
    d.name: d for d in (STORE, SMTP, WEBHOOKS, SINK, DAPR, BACKEND, OIDC)
}
NAMES = tuple(DEPENDENCIES)

# The knobs a setting may override, by their env suffix -> the field they set.
RETRY_KNOBS = {
    "ATTEMPTS": "attempts",
    "BUDGET": "budget",
    "DELAY": "delay",
    "MAX_DELAY": "max_delay",
}
BREAKER_KNOBS = {"FAILURES": "failures", "RECOVERY": "recovery"}


@dataclass(frozen=True)
class Resolved:
    """A dependency with the settings applied: what `Services` calls it with."""

    dependency: Dependency
    policy: RetryPolicy
    failures: int | None  # None: no breaker
    recovery: float

    @property
    def name(self) -> str:
        return self.dependency.name

    def new_breaker(self) -> CircuitBreaker | None:
        if self.failures is None:
            return None
        return CircuitBreaker(
            self.name, failure_threshold=self.failures, recovery_timeout=self.recovery
        )


def resolve(name: str, settings: Settings) -> Resolved:
    """The dependency `name` as these settings configure it: the table's entry, the
    settings' shared budget and breaker, and this dependency's own overrides last."""
    dependency = DEPENDENCIES[name]
    override = settings.overrides.get(name)
    retry = dependency.retry
    if override is not None:
        retry = dataclasses.replace(
            retry,
            **{
                field: getattr(override, field)
                for field in RETRY_KNOBS.values()
                if getattr(override, field) is not None
            },
        )
    policy = RetryPolicy(
        budget=retry.budget if retry.budget is not None else settings.retry_budget,
        base_delay=retry.delay,
        max_delay=retry.max_delay,
        max_attempts=retry.attempts,
    )
    if dependency.breaker is None:
        return Resolved(dependency, policy, None, 0.0)
    failures = _first(
        override and override.failures, dependency.breaker.failures, settings.breaker_failures
    )
    recovery = _first(
        override and override.recovery, dependency.breaker.recovery, settings.breaker_recovery
    )
    return Resolved(dependency, policy, int(failures), float(recovery))


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)
