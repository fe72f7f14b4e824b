"""The errors a function answers with, each carrying its HTTP status.

Domain code raises these; the runtime turns them into a JSON body ``{"error", "field"}``.
The status decides what the broker does next: Knative retries 5xx, 404, 408, 409 and 429
and sends everything else straight to the dead-letter sink, so a client's mistake must
never surface as a 5xx and a transient fault must never surface as a 4xx.
"""

from __future__ import annotations

from typing import Any

# What Knative's broker retries besides every 5xx and a delivery that got no answer at
# all (refused, reset, timed out); any other non-2xx goes to the dead-letter sink. The one
# copy: the runtime's Dapr answers, `nextup dev`'s dispatcher and the tests' broker read it.
KNATIVE_RETRIED = frozenset({404, 408, 409, 429})


def retried_by_broker(status: int | None) -> bool:
    """Whether Knative redelivers after this answer (None: no answer at all)."""
    return status is None or status >= 500 or status in KNATIVE_RETRIED


class EventError(Exception):
    """An event that cannot be processed, with the HTTP status that says why."""

    status = 400

    def __init__(self, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "field": self.field}


class BadRequest(EventError):
    """Malformed CloudEvent or invalid data: not retried, goes to the dead-letter sink."""

    status = 400


class Unauthorized(EventError):
    status = 401


class Forbidden(EventError):
    """The event names a task that belongs to another user."""

    status = 403


class NotFound(EventError):
    """The task is not known yet; retried because its `created` event may be in flight."""

    status = 404


class UnprocessableContent(EventError):
    """Well-formed, but it cannot be acted on (an event id reused for another event):
    422, which the broker does not retry, so it goes to the dead-letter sink."""

    status = 422


class PayloadTooLarge(EventError):
    status = 413


class UnsupportedMediaType(EventError):
    status = 415


class HeadersTooLarge(EventError):
    """431: not retried, like every 4xx but 404, 408, 409 and 429."""

    status = 431

    def __init__(self, error: str, field: str | None = "headers") -> None:
        super().__init__(error, field)


class Unavailable(EventError):
    """A dependency is down or throttling: the broker should retry later."""

    status = 503

    def __init__(self, error: str, field: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(error, field)
        self.retry_after = retry_after


def from_validation_error(exc: Any, prefix: str = "data") -> BadRequest:
    """Turn a pydantic ValidationError into a BadRequest naming the first bad field."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    message = first["msg"]
    # Pydantic prefixes messages raised from validators with "Value error, ": noise for a client.
    message = message.removeprefix("Value error, ")
    return BadRequest(f"{path}: {message}", field=path)
