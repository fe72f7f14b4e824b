"""Binds a handler to functions-framework: the thin shell around every function.

functions-framework's `cloud_event` signature answers GET with 405 and drops return
values, so the functions use its ASGI `http` signature and this module does the rest:

- POST on any path: a CloudEvent (binary or structured mode; for functions that sweep,
  also the OpenFaaS cron-connector's empty POST), decoded, deduplicated on `source`+`id`
  through a stored receipt, handled, and answered. Emitted events go to `K_SINK` (202) or,
  without one, the single emitted event is the reply (200, binary mode).
- GET `/health/liveness`, `/health/readiness` (Knative functions) and `/_/health`,
  `/_/ready` (OpenFaaS watchdog); readiness probes the real dependencies.
- GET `/dapr/subscribe`, and Dapr's SUCCESS/RETRY/DROP answers for Dapr deliveries.
- Errors: `EventError`s become their status with `{"error", "field"}`; a 503 carries
  `Retry-After`. Anything else is a bug in nextup and answers 500.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nextup import logs
from nextup.config import settings as load_settings
from nextup.envelope import MAX_BODY, CloudEvent, event_key, parse_http, to_binary
from nextup.errors import BadRequest, EventError, PayloadTooLarge, Unauthorized, Unavailable
from nextup.events import PING, Decoded, decode
from nextup.services import Services

LIVENESS = ("/health/liveness", "/_/health")
READINESS = ("/health/readiness", "/_/ready")
# What the broker retries; Dapr is told RETRY for these and DROP for other client errors.
RETRIED = {404, 408, 409, 429}


@dataclass(frozen=True)
class Result:
    """What a handler did: an outcome word for logs and replies, and the events it emits.

    `delivered` runs once the events are out (posted to the sink, or about to be the
    reply): a handler that keeps an outbox marks its entries done there. `settled` runs
    after that, whether the events went out or not: a handler releases there what it held
    for the whole delivery.
    """

    outcome: str
    events: tuple[CloudEvent, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    delivered: Callable[[], Awaitable[None]] | None = None
    settled: Callable[[], None] | None = None


Handler = Callable[[Services, CloudEvent, Decoded], Awaitable[Result]]


@dataclass(frozen=True)
class Function:
    name: str
    consumes: frozenset[str]
    emits: frozenset[str]
    # "module:attribute" of the Handler, imported on first use.
    handler: str
    dependencies: tuple[str, ...]
    dapr_topic: str
    # Accept the OpenFaaS cron-connector's plain POST as a ping tick.
    ticks: bool = False
    # GET / and /health report every configured dependency (the health function).
    report: bool = False
    # Under a Dapr sidecar: the topic each emitted type is published to (see functions.py).
    dapr_publish: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A reply whose type matches the function's own Trigger would loop forever.
        if self.consumes & self.emits:
            raise ValueError(
                f"{self.name} emits a type it consumes: {sorted(self.consumes & self.emits)}"
            )

    def load_handler(self) -> Handler:
        module, _, attribute = self.handler.partition(":")
        return getattr(importlib.import_module(module), attribute)


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: EventError) -> Response:
    headers = None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return _json(exc.body(), exc.status, headers)


def _event_response(event: CloudEvent) -> Response:
    headers, body = to_binary(event)
    return Response(body, status_code=200, headers=headers)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes", field="data")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes", field="data")
        chunks.append(chunk)
    return b"".join(chunks)


def cron_tick(request: Request, now: datetime) -> CloudEvent:
    """The OpenFaaS cron-connector POSTs no CloudEvent: stand one in for it.

    Its id is the gateway's X-Call-Id when present, else the minute, so a retried call
    of the same schedule slot is still recognised as a duplicate.
    """
    call_id = request.headers.get("x-call-id") or now.strftime("%Y%m%dT%H%M")
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": f"cron-{call_id}"[:256],
            "source": "/openfaas/cron-connector",
            "type": PING,
            "time": now.isoformat(),
        },
        None,
    )


def _from_dapr(event: CloudEvent) -> bool:
    """Dapr's pub/sub delivers structured events carrying the pubsub name."""
    return "pubsubname" in event.get_attributes()


def _dapr(response: Response) -> Response:
    status = response.status_code
    if status < 300:
        verdict = "SUCCESS"
    elif status >= 500 or status in RETRIED:
        verdict = "RETRY"
    else:
        verdict = "DROP"
    return _json({"status": verdict}, 200)


def _describe(response: Response) -> dict[str, Any]:
    if response.headers.get("ce-id"):
        return {"event": {"headers": dict(response.headers), "body": response.body.decode()}}
    return {"body": json.loads(response.body) if response.body else None}


def _replay(stored: dict[str, Any], status: int) -> Response:
    if "event" in stored:
        headers = {
            k: v for k, v in stored["event"]["headers"].items() if k.lower() != "content-length"
        }
        return Response(stored["event"]["body"].encode(), status_code=status, headers=headers)
    return _json(stored.get("body") or {}, status)


class App:
    """One function's request handling; its services open lazily on the first request."""

    def __init__(self, function: Function) -> None:
        self.function = function
        self._handler: Handler | None = None
        self._services: Services | None = None
        self._log: logging.Logger | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            settings = load_settings()
            self._log = logs.configure(self.function.name, settings.log_level)
            self._services = Services(settings, self.function.name)
        return self._services

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            self._handler = self.function.load_handler()
        return self._handler

    @property
    def log(self) -> logging.Logger:
        _ = self.services
        assert self._log is not None
        return self._log

    async def __call__(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        if method in ("GET", "HEAD"):
            return await self.get(path)
        if method != "POST":
            return _json(
                {"error": f"method {method} not allowed", "field": None},
                405,
                {"Allow": "GET, POST"},
            )
        return await self.post(request)

    async def get(self, path: str) -> Response:
        fn = self.function
        if path in LIVENESS:
            return _json({"status": "alive", "function": fn.name}, 200)
        if path in READINESS:
            return await self.checked(self.readiness_dependencies())
        if fn.report and path in ("/", "/health"):
            return await self.checked(self.services.configured())
        if path == "/dapr/subscribe":
            settings = self.services.settings
            topic = settings.dapr_topic or fn.dapr_topic
            return _json([{"pubsubname": settings.dapr_pubsub, "topic": topic, "route": "/"}], 200)  # type: ignore[arg-type]
        if path == "/":
            return _json(
                {"function": fn.name, "consumes": sorted(fn.consumes), "emits": sorted(fn.emits)},
                200,
            )
        return _json({"error": f"no route GET {path[:200]}", "field": None}, 404)

    def readiness_dependencies(self) -> tuple[str, ...]:
        """What this function needs to answer an event: its own dependencies and, beside a
        Dapr sidecar, the sidecar if it emits anything (its one way out)."""
        fn = self.function
        if fn.emits and self.services.settings.dapr_http_port and "dapr" not in fn.dependencies:
            return (*fn.dependencies, "dapr")
        return fn.dependencies

    async def checked(self, dependencies: tuple[str, ...]) -> Response:
        checks = await self.services.run_checks(dependencies)
        ready = all(check.ok for check in checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "function": self.function.name,
            "checks": {name: check.model_dump() for name, check in checks.items()},
        }
        return _json(body, 200 if ready else 503)

    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        services = self.services
        event: CloudEvent | None = None
        decoded: Decoded | None = None
        outcome, error = "error", None
        try:
            if services.settings.oidc_issuer or services.settings.oidc_audience:
                from nextup import auth  # only functions with OIDC pay for its import

                await auth.authenticate(request.headers, services.settings, services.http)
            body = await read_body(request)
            if (
                self.function.ticks
                and request.headers.get("x-connector") == "cron-connector"
                and "ce-specversion" not in request.headers
            ):
                event = cron_tick(request, services.now())
            else:
                event = parse_http(request.headers, body)
            decoded = decode(event)
            response, outcome = await self.handle(event, decoded)
        except EventError as exc:
            response = error_response(exc)
            outcome = "rejected" if exc.status < 500 else "unavailable"
            error = exc.error
        except Exception:
            self.log.exception("handler failed", extra=self._fields(event, decoded))
            response = _json({"error": "internal error", "field": None}, 500)
        fields = self._fields(event, decoded)
        fields.update(
            outcome=outcome,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if error:
            fields["error"] = error
        self.log.info("event", extra=fields)
        if event is not None and _from_dapr(event):
            return _dapr(response)
        return response

    @staticmethod
    def _fields(event: CloudEvent | None, decoded: Decoded | None) -> dict[str, Any]:
        if event is None:
            return {}
        fields = {"event_id": event["id"], "type": event["type"], "source": event["source"]}
        if decoded is not None:
            fields["user"] = getattr(decoded.data, "user_id", None)
        if event.get("traceparent"):
            fields["traceparent"] = event["traceparent"]
        return fields

    async def handle(self, event: CloudEvent, decoded: Decoded) -> tuple[Response, str]:
        fn, services = self.function, self.services
        if decoded.type not in fn.consumes:
            if decoded.seed or _from_dapr(event):
                # Dapr and the seed's producers publish every type on one topic:
                # what is not for this function is acknowledged, not dead-lettered.
                return _json(
                    {"outcome": "ignored", "reason": f"{fn.name} does not handle {decoded.type}"},
                    202,
                ), "ignored"
            handled = ", ".join(sorted(fn.consumes))
            raise BadRequest(
                f"{fn.name} does not handle {decoded.type}; it handles {handled}", field="type"
            )
        from nextup.store import SYSTEM_SCOPE

        store = services.store
        scope = getattr(decoded.data, "user_id", None) or SYSTEM_SCOPE
        key = event_key(event)
        receipt = await services.db(store.get_receipt, scope, key, now=services.now())
        if receipt is not None:
            return _replay(receipt.reply or {}, receipt.status), "duplicate"
        result = await self.handler(services, event, decoded)
        try:
            response = await self.deliver(event, result)
            if result.delivered is not None:
                await result.delivered()
        finally:
            if result.settled is not None:
                result.settled()
        await self.remember(scope, key, response)
        return response, result.outcome

    async def deliver(self, event: CloudEvent, result: Result) -> Response:
        """Send what the handler emitted: to K_SINK, else through the Dapr sidecar, else as
        the reply. Any failure leaves the event unanswered (503), so the broker or Dapr
        delivers it again and the same events, with the same ids, go out then."""
        services = self.services
        settings = services.settings
        ids = [e["id"] for e in result.events]
        if result.events and (settings.sink or settings.dapr_http_port):
            for emitted in result.events:
                if settings.sink:
                    await services.emit(emitted)
                else:
                    await services.publish(emitted, self.dapr_topic(emitted["type"]))
            return _json({"outcome": result.outcome, "emitted": ids, **result.detail}, 202)
        if not result.events:
            return _json({"outcome": result.outcome, **result.detail}, 202)
        if _from_dapr(event):
            raise Unavailable(
                "neither K_SINK nor DAPR_HTTP_PORT is set: under Dapr an emitted event "
                "cannot travel as the reply",
                field="sink",
            )
        if len(result.events) > 1:
            raise RuntimeError(f"{len(result.events)} events to emit and no K_SINK to send them to")
        return _event_response(result.events[0])

    def dapr_topic(self, type_: str) -> str:
        overrides = self.services.settings.dapr_topics
        return overrides.get(type_) or self.function.dapr_publish.get(type_) or type_

    async def remember(self, scope: str, key: str, response: Response) -> None:
        from nextup.store import Receipt

        services = self.services
        now = services.now()
        receipt = Receipt(
            key=key,
            status=response.status_code,
            reply=_describe(response),
            created_at=now,
            expires_at=now + services.settings.receipt_ttl,
        )
        await services.db(services.store.put_receipt, scope, receipt, now=now)


def bind(function: Function) -> Callable[[Request], Awaitable[Response]]:
    """The functions-framework target for `function` (ASGI, `http` signature)."""
    import functions_framework.aio

    app = App(function)

    @functions_framework.aio.http
    async def handle(request: Request) -> Response:
        return await app(request)

    handle.app = app  # type: ignore[attr-defined] - tests and tools reach the state through it
    return handle
