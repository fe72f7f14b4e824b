"""What a Trigger's `delivery` means for one event, as the Kafka Broker's dispatcher reads it.

Pure rules, no I/O: which answers are retried, how long to wait before the n-th retry, and
the error extensions a dead letter carries.
"""

from __future__ import annotations

import base64
from datetime import timedelta

from nextup.errors import KNATIVE_RETRIED, retried_by_broker
from nextup_dev.manifests import Delivery

# Knative retries these besides every 5xx; any other non-2xx answer fails at once.
RETRIED_STATUS = KNATIVE_RETRIED
ERROR_DATA_LIMIT = 1024
DEST, CODE, DATA = "knativeerrordest", "knativeerrorcode", "knativeerrordata"


def succeeded(status: int) -> bool:
    return 200 <= status < 300


def retryable(status: int | None) -> bool:
    """No answer at all (refused, reset, timed out) is retried like a 5xx."""
    return retried_by_broker(status)


def backoff(delivery: Delivery, retry: int) -> timedelta:
    """The wait before retry number `retry` (1 for the first): linear waits
    delay x n, exponential delay x 2^(n-1), so PT0.5S gives 0.5 s, 1 s, 2 s, ..."""
    if retry < 1:
        raise ValueError("retries are numbered from 1")
    if delivery.backoff_policy == "linear":
        return delivery.backoff_delay * retry
    return delivery.backoff_delay * (2 ** (retry - 1))


def attempt_timeout(delivery: Delivery, default: float = 30.0) -> float:
    """Seconds one attempt may take; Knative's own default is the HTTP client's."""
    return delivery.timeout.total_seconds() if delivery.timeout else default


def error_extensions(dest: str, status: int | None, body: bytes | None) -> dict[str, str]:
    """The extensions Knative adds to a dead letter: where it failed, the answer's status
    and its body (base64, cut at 1024 bytes). No answer means no code and no data."""
    extensions = {DEST: dest}
    if status is not None:
        extensions[CODE] = str(status)
    if body:
        extensions[DATA] = base64.b64encode(body[:ERROR_DATA_LIMIT]).decode()
    return extensions
