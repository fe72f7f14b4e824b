"""health: every dependency's status, as HTTP for probes and as a CloudEvent canary.

A `todo.health.probe` event (or a ping tick) travels through the broker like any other;
the `todo.health.reported` reply says what the function could reach and how long the
probe took to arrive, so a slow or broken eventing path shows up as a number.
"""

from __future__ import annotations

from nextup.envelope import CloudEvent, event_time
from nextup.events import HEALTH_REPORTED, Decoded, HealthProbe, HealthReported
from nextup.fields import localize
from nextup.handlers.shared import emitted
from nextup.runtime import Result
from nextup.services import Services


async def handle(services: Services, event: CloudEvent, decoded: Decoded) -> Result:
    checks = await services.run_checks(services.configured())
    sent = localize(decoded.data.sent_at, None) if isinstance(decoded.data, HealthProbe) else None
    sent = sent or event_time(event)
    delay_ms = round((services.now() - sent).total_seconds() * 1000, 2) if sent else None
    report = HealthReported(
        function=services.function,
        ok=all(check.ok for check in checks.values()),
        checks=checks,
        delay_ms=delay_ms,
        probe_id=event["id"][:256],
    )
    reply = emitted(services, HEALTH_REPORTED, report, cause=event, purpose="health")
    return Result("reported", events=(reply,), detail={"ok": report.ok, "delay_ms": delay_ms})
