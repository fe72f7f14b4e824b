"""The broker ingress: CloudEvents over HTTP (binary or structured mode) onto the broker
topic, as the Knative Kafka Broker's receiver does.

POST `/<namespace>/<broker>` (the Kafka Broker's ingress path) or `/` (when there is one
broker): 202 once the record is on the topic, 400 when the request is not a CloudEvent
(413 when too large), 404 for an unknown broker, 503 when Kafka does not take it.
GET `/healthz`: 200 once every part of `nextup dev` is up, else 503 naming what is not;
GET `/status`: what flowed so far, per Trigger (the terminal's table, as JSON);
`/ui`: the console (`nextup_dev.console`). An event that comes without a W3C `traceparent`
gets one, as at a Knative broker with tracing on.

The runtime's own senders add `?from=pingsource:<name>` (ticks) or `?from=function:<name>`
(a function's K_SINK) to the path, so the counts tell them from what producers posted; a
Knative broker ignores the query, so the same URLs work there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nextup.envelope import CloudEvent, parse_http
from nextup.errors import EventError, PayloadTooLarge
from nextup.runtime import read_body
from nextup_dev import binding
from nextup_dev.manifests import Broker, Eventing

PRODUCE_TIMEOUT = 5.0


def _error(status: int, error: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "field": field}, status_code=status)


class Ingress:
    def __init__(
        self,
        eventing: Eventing,
        producer: AIOKafkaProducer,
        report: Callable[[str, CloudEvent, str | None], None],
        parts: Callable[[], dict[str, bool]],
        counts: Callable[[], Awaitable[dict[str, object]]],
        *,
        observe: Callable[[str, CloudEvent, str], None] | None = None,
        routes: Sequence[Any] = (),
    ) -> None:
        self.brokers = {broker.path: broker for broker in eventing.brokers}
        self.triggers = {
            broker.path: [
                t
                for t in eventing.triggers
                if (t.namespace, t.broker) == (broker.namespace, broker.name)
            ]
            for broker in eventing.brokers
        }
        self.producer = producer
        self.report = report
        self.parts = parts
        self.counts = counts
        self.observe = observe  # the console: each event taken, with who sent it
        self.app = Starlette(
            routes=[
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/status", self.status, methods=["GET"]),
                *routes,
                Route("/{path:path}", self.receive, methods=["POST", "OPTIONS"]),
            ]
        )

    def broker_for(self, path: str) -> Broker | None:
        if path in ("", "/") and len(self.brokers) == 1:
            return next(iter(self.brokers.values()))
        return self.brokers.get(path.rstrip("/"))

    async def healthz(self, request: Request) -> Response:
        parts = self.parts()
        ready = all(parts.values())
        return JSONResponse(
            {"status": "ready" if ready else "starting", "parts": parts},
            status_code=200 if ready else 503,
        )

    async def status(self, request: Request) -> Response:
        return JSONResponse(await self.counts())

    async def receive(self, request: Request) -> Response:
        broker = self.broker_for(request.url.path)
        if broker is None:
            known = ", ".join(sorted(self.brokers))
            return _error(404, f"no broker at {request.url.path[:200]}; brokers: {known}")
        if request.method == "OPTIONS":
            return Response(status_code=200, headers={"Allow": "POST, OPTIONS"})
        try:
            body = await read_body(request)
            event = parse_http(request.headers, body)
        except PayloadTooLarge as exc:
            return _error(413, exc.error, exc.field)
        except EventError as exc:
            # Whatever the reason, a request that is not a CloudEvent is the client's to fix.
            return _error(400, exc.error, exc.field)
        if "traceparent" not in event and self.observe is not None:
            # For the console, as Knative's broker does with tracing on: one trace id ties
            # a causal chain together (functions copy it into what they emit).
            event["traceparent"] = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        record = binding.record_from_event(event)
        try:
            await asyncio.wait_for(
                self.producer.send_and_wait(
                    broker.topic, record.value, key=record.key, headers=record.headers
                ),
                PRODUCE_TIMEOUT,
            )
        except (KafkaError, TimeoutError) as exc:
            return JSONResponse(
                {"error": f"Kafka did not take the event: {type(exc).__name__}", "field": None},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        kind = self._kind(request, broker, record)
        self.report(kind, event, record.key and record.key.decode())
        if self.observe is not None:
            self.observe(kind, event, request.query_params.get("from", ""))
        return Response(status_code=202)

    def _kind(self, request: Request, broker: Broker, record: binding.Record) -> str:
        """tick or emitted (which runtime part sent it), else posted; a posted event no
        Trigger will get is unrouted (what functions emit for the todo app is not)."""
        origin = request.query_params.get("from", "")
        if origin.startswith("pingsource:"):
            return "tick"
        if origin.startswith("function:"):
            return "emitted"
        attributes = binding.attributes(record.headers)
        if not any(t.filter(attributes) for t in self.triggers[broker.path]):
            return "unrouted"
        return "posted"
