"""health: every dependency's status, as HTTP for probes and as a CloudEvent canary.

A `todo.health.probe` event (or a ping tick) travels through the broker like any other;
the `todo.health.reported` reply says what the function could reach and how long the
probe took to arrive, so a slow or broken eventing path shows up as a number.
"""

from __future__ import annotations

from nextup.contract import Context, Effect, Result
from nextup.envelope import event_time
from nextup.events import HEALTH_REPORTED, HealthProbe, HealthReported
from nextup.fields import localize
from nextup.handlers.shared import emitted
from nextup.services import Services


async def _report(services: Services, ctx: Context) -> Result:
    checks = await services.run_checks(services.configured())
    probe = ctx.data if isinstance(ctx.data, HealthProbe) else None
    sent = (localize(probe.sent_at, None) if probe else None) or event_time(ctx.event)
    delay_ms = round((ctx.now - sent).total_seconds() * 1000, 2) if sent else None
    report = HealthReported(
        function=services.function,
        ok=all(check.ok for check in checks.values()),
        checks=checks,
        delay_ms=delay_ms,
        probe_id=ctx.event["id"][:256],
    )
    reply = emitted(ctx, HEALTH_REPORTED, report, purpose="health")
    return Result("reported", events=(reply,), detail={"ok": report.ok, "delay_ms": delay_ms})


handle = Effect(_report)
