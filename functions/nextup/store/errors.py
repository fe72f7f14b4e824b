"""What the store raises, each an `EventError` so a handler can let it escape.

The HTTP status decides what the broker does with the event: Knative retries 5xx and 409
and dead-letters most other 4xx. So a transient fault is a 503 (retry later) and a lost
compare-and-set a 409 (retry now: the handler re-reads and re-applies).
"""

from __future__ import annotations

from nextup.errors import BadRequest, EventError, Unavailable


class StoreError(EventError):
    """The store failed in a way retrying will not fix (bad schema, denied access ...)."""

    status = 500


class StoreUnavailable(StoreError, Unavailable):
    """The store cannot answer now: unreachable, throttling or busy.

    Its `field` names the dependency (``store``), like the other Unavailable errors.
    """

    status = 503

    def __init__(self, error: str, field: str | None = "store", retry_after: float = 1.0) -> None:
        super().__init__(error, field, retry_after)


class StoreNotReady(StoreError, Unavailable):
    """The store does not exist in a usable form (a DynamoDB table not created yet, a
    SQLite file that cannot be created): a person has to act, and the message says how.

    503, so the broker keeps the event until then; but not a fault of the store itself:
    it is not retried inside the call and never opens the circuit breaker, so every
    answer keeps saying what is missing instead of "circuit open".
    """

    status = 503

    def __init__(self, error: str, field: str | None = "store", retry_after: float = 5.0) -> None:
        super().__init__(error, field, retry_after)


class Conflict(StoreError):
    """A compare-and-set lost: the item changed since it was read."""

    status = 409


class CommitConflict(Conflict):
    """An atomic commit lost: the condition of one of its writes did not hold (another
    writer got there first). Nothing of it was written; `failed` are the writes' indexes
    (empty when the backend cannot say which)."""

    def __init__(self, failed: tuple[int, ...] = ()) -> None:
        super().__init__(f"commit lost a race (writes {list(failed) or '?'})")
        self.failed = failed


class InvalidCursor(StoreError, BadRequest, ValueError):
    """A page cursor this store did not hand out (or for another query)."""

    status = 400

    def __init__(self, detail: str = "not a cursor from this store") -> None:
        super().__init__(f"invalid cursor: {detail}", field="cursor")
