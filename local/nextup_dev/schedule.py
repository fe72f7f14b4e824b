"""A PingSource's schedule: standard cron in its time zone, and the tick it sends.

Knative's PingSource runs robfig/cron: five fields, `@hourly`-style descriptors, and an
optional `CRON_TZ=Zone ` prefix that wins over `spec.timezone`. Ticks fire on the minute,
so daylight-saving gaps and repeats follow the zone, not UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from nextup_dev.manifests import PING_TYPE, PingSource


def _split(schedule: str, timezone: str) -> tuple[str, ZoneInfo]:
    expression = schedule.strip()
    for prefix in ("CRON_TZ=", "TZ="):
        if expression.startswith(prefix):
            timezone, _, expression = expression[len(prefix) :].partition(" ")
            expression = expression.strip()
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    if not croniter.is_valid(expression) or len(expression.split()) > 5:
        raise ValueError(f"not a five-field cron schedule: {schedule!r}")
    return expression, zone


def check(source: PingSource) -> None:
    """Raise ValueError naming the PingSource if its schedule or zone cannot run."""
    try:
        _split(source.schedule, source.timezone)
    except ValueError as exc:
        raise ValueError(f"PingSource {source.name}: {exc}") from None


def next_tick(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`, in UTC."""
    expression, zone = _split(schedule, timezone)
    local = after.astimezone(zone)
    return croniter(expression, local).get_next(datetime).astimezone(UTC)


def tick_request(source: PingSource, at: datetime) -> tuple[dict[str, str], bytes]:
    """The binary-mode request a PingSource posts to its sink for the tick at `at`."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": source.source,
        "ce-type": PING_TYPE,
        "ce-time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if source.content_type:
        headers["content-type"] = source.content_type
    return headers, source.data
