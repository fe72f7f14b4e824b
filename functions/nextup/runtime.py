"""Binds a handler to functions-framework: the thin shell around every function.

functions-framework's `cloud_event` signature answers GET with 405 and drops return
values, so the functions use its ASGI `http` signature and this module does the rest:

- POST on any path: a CloudEvent (binary or structured mode; for functions that sweep,
  also the OpenFaaS cron-connector's empty POST), decoded, deduplicated on `source`+`id`
  through a receipt, handled, and answered. A `Transaction` handler's receipt is committed
  with its effects, all or nothing; an `Effect`'s after it (`nextup.contract`). Emitted
  events go to `K_SINK` or through a Dapr sidecar (202) or, without either, the single
  emitted event is the reply (200, binary mode). A redelivery gets the first answer, and
  its events are sent again (same ids) in case the first delivery could not send them;
  a second event reusing a `source`+`id` for other data gets 422 and changes nothing.
- GET `/health/liveness`, `/health/readiness` (Knative functions) and `/_/health`,
  `/_/ready` (OpenFaaS watchdog); readiness probes the real dependencies.
- GET `/dapr/subscribe`, and Dapr's SUCCESS/RETRY/DROP answers for Dapr deliveries.
- Errors: `EventError`s become their status with `{"error", "field"}`; a 503 carries
  `Retry-After`. A client that goes away mid-request is logged as such, not as an error.
  Anything else is a bug in nextup and answers 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from nextup import jsontext, logs, resilience
from nextup.config import settings as load_settings
from nextup.contract import Context, Effect, Function, Result, Transaction
from nextup.envelope import MAX_BODY, CloudEvent, event_key, parse_http, to_binary
from nextup.errors import (
    BadRequest,
    EventError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnprocessableContent,
    retried_by_broker,
)
from nextup.events import PING, Decoded, decode
from nextup.services import Services

# pydantic looks for plugins in every installed distribution's entry points when it builds
# its first validator: ~12 ms of a function's first event, for plugins a function never
# has. Set it to a plugin's name list (or empty) to have pydantic load them.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

LIVENESS = ("/health/liveness", "/_/health")
READINESS = ("/health/readiness", "/_/ready")
# Rounds of read, decide and commit before a transaction that keeps losing races gives up
# (503: the broker tries again later).
COMMIT_ROUNDS = 8
# Emitted events in flight at once, to the sink or the Dapr sidecar.
EMITS_AT_ONCE = 16


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    # What Starlette's JSONResponse writes (compact UTF-8), by `jsontext`'s faster encoder.
    return Response(jsontext.dumps(body), status, headers, media_type="application/json")


def error_response(exc: EventError) -> Response:
    headers = None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return _json(exc.body(), exc.status, headers)


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
    elif retried_by_broker(status):  # what the broker would retry, Dapr is told to
        verdict = "RETRY"
    else:
        verdict = "DROP"
    return _json({"status": verdict}, 200)


def digest(decoded: Decoded) -> str:
    """What an event asks for, fingerprinted: its type and validated data, not how it
    travelled (Dapr adds attributes to a redelivery, a producer may resend in the other
    content mode)."""
    canonical = json.dumps(
        [decoded.type, decoded.data.model_dump(mode="json")], sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _stored(event: CloudEvent) -> dict[str, Any]:
    return {"attributes": dict(event.get_attributes()), "data": event.data}


def _event_response(event: CloudEvent) -> Response:
    headers, body = to_binary(event)
    return Response(body, status_code=200, headers=headers)


class App:
    """One function's request handling; its services open lazily on the first request."""

    def __init__(self, function: Function) -> None:
        self.function = function
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
        # Every retry in this delivery stops at its deadline (`resilience.call`), which is
        # inside the Trigger's timeout: the broker gets a 503 in time, never a timeout.
        deadline = resilience.set_deadline(services.settings.event_deadline)
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
        except ClientDisconnect:
            # The client went away mid-request: nobody to answer, nothing of ours failed.
            response = Response(status_code=499)
            outcome, error = "aborted", "the client closed the connection"
        except Exception:
            self.log.exception("handler failed", extra=self._fields(event, decoded))
            response = _json({"error": "internal error", "field": None}, 500)
        finally:
            resilience.reset_deadline(deadline)
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
        ctx = Context(event, decoded, event_key(event), services.now(), services.source)
        handler = fn.handler(decoded.type)
        if isinstance(handler, Transaction):
            return await self.transact(handler, ctx)
        return await self.affect(handler, ctx)

    async def transact(self, handler: Transaction, ctx: Context) -> tuple[Response, str]:
        """Read, decide, commit the receipt with the effects; again from fresh state if
        another delivery committed first (then usually to answer as it did)."""
        from nextup.store import CommitConflict, receipt_ref

        services, store = self.services, self.services.store
        fingerprint = digest(ctx.decoded)
        for _ in range(COMMIT_ROUNDS):
            prepared = handler.prepare(ctx)
            receipt, *found = await services.db(store.load, [receipt_ref(ctx.key), *prepared.reads])
            if receipt is not None and not receipt.expired(ctx.now):
                return await self.replay(receipt, fingerprint), "duplicate"
            decision = prepared.decide(found)
            if decision.before_commit is not None:
                await decision.before_commit(services)
            response = self.answer(ctx.event, decision.outcome, decision.events, decision.detail)
            new_receipt = self.receipt(ctx, fingerprint, response, decision.events, receipt)
            try:
                *_, stored = await services.db(store.commit, [*decision.changes, new_receipt])
            except CommitConflict:
                continue
            await self.sent(stored)
            return response, decision.outcome
        raise Unavailable("the event's state keeps changing: try again", field="store")

    async def affect(self, handler: Effect, ctx: Context) -> tuple[Response, str]:
        """An effect runs its own course; its receipt is kept once its events are out."""
        from nextup.store import CommitConflict, receipt_ref

        services, store = self.services, self.services.store
        fingerprint = digest(ctx.decoded)
        [receipt] = await services.db(store.load, [receipt_ref(ctx.key)])
        if receipt is not None and not receipt.expired(ctx.now):
            return await self.replay(receipt, fingerprint), "duplicate"
        result: Result = await handler.run(services, ctx)
        try:
            response = self.answer(ctx.event, result.outcome, result.events, result.detail)
            await self.send(result.events)
            if result.delivered is not None:
                await result.delivered()
        finally:
            if result.settled is not None:
                result.settled()
        if result.unavailable is not None:
            raise result.unavailable  # what could be done is done; the rest waits for it
        new_receipt = self.receipt(ctx, fingerprint, response, result.events, receipt)
        new_receipt = new_receipt.model_copy(update={"unsent": False})  # sent above
        with contextlib.suppress(CommitConflict):  # a concurrent delivery kept its own
            await services.db(store.commit, [new_receipt])
        return response, result.outcome

    def answer(
        self,
        event: CloudEvent,
        outcome: str,
        events: tuple[CloudEvent, ...],
        detail: dict[str, Any],
    ) -> Response:
        """The answer to a delivery, decided before anything is stored: 202 when the events
        go out by K_SINK or Dapr (or there are none), else the one event as the reply."""
        settings = self.services.settings
        if not events:
            return _json({"outcome": outcome, **detail}, 202)
        if settings.sink or settings.dapr_http_port:
            ids = [e["id"] for e in events]
            return _json({"outcome": outcome, "emitted": ids, **detail}, 202)
        if _from_dapr(event):
            raise Unavailable(
                "neither K_SINK nor DAPR_HTTP_PORT is set: under Dapr an emitted event "
                "cannot travel as the reply",
                field="sink",
            )
        if len(events) > 1:
            raise RuntimeError(f"{len(events)} events to emit and no K_SINK to send them to")
        return _event_response(events[0])

    async def send(self, events: tuple[CloudEvent, ...] | list[CloudEvent]) -> None:
        """Emitted events out by K_SINK, else through the Dapr sidecar (in reply mode the
        answer carries the one event). A failure answers 503: the broker, or Dapr,
        delivers again and the receipt's events go out then, with the same ids."""
        services = self.services
        settings = services.settings
        if not (settings.sink or settings.dapr_http_port):
            return
        gate = asyncio.Semaphore(EMITS_AT_ONCE)

        async def one(emitted: CloudEvent) -> None:
            async with gate:
                if settings.sink:
                    await services.emit(emitted)
                else:
                    await services.publish(emitted, self.dapr_topic(emitted["type"]))

        # A sweep announces hundreds at once: one after the other, their round trips were
        # most of its time. Every one is tried; the first failure is the answer (503), and
        # a redelivery sends them all again under the same ids.
        outcomes = await asyncio.gather(*(one(e) for e in events), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def sent(self, receipt: Any) -> None:
        """Send a receipt's events that are not known to be out, then say they are (one
        more write, only when they go by K_SINK or Dapr: a reply goes out with the
        answer, and a redelivery gets it again from the receipt)."""
        from nextup.store import CommitConflict

        if not receipt.unsent:
            return
        await self.send([CloudEvent(e["attributes"], e["data"]) for e in receipt.events])
        with contextlib.suppress(CommitConflict):  # a redelivery marked them meanwhile
            await self.services.db(
                self.services.store.commit, [receipt.model_copy(update={"unsent": False})]
            )

    async def replay(self, receipt: Any, fingerprint: str) -> Response:
        """The first delivery's answer to a redelivery, sending its events if the first
        could not."""
        if receipt.digest and receipt.digest != fingerprint:
            raise UnprocessableContent(
                "this event's source and id were used before for another event: "
                "nothing was done (CloudEvents source + id must be unique)",
                field="id",
            )
        await self.sent(receipt)
        if receipt.status == 200 and receipt.events:
            event = receipt.events[0]
            return _event_response(CloudEvent(event["attributes"], event["data"]))
        return _json(receipt.body or {}, receipt.status)

    def receipt(
        self,
        ctx: Context,
        fingerprint: str,
        response: Response,
        events: tuple[CloudEvent, ...],
        previous: Any,
    ) -> Any:
        """The receipt that answers this event's redeliveries; it replaces an expired one
        (at its version)."""
        from nextup.store import Receipt

        body = None if response.status_code == 200 else jsontext.loads(response.body)
        settings = self.services.settings
        return Receipt(
            key=ctx.key,
            digest=fingerprint,
            status=response.status_code,
            body=body,
            events=[_stored(e) for e in events],
            unsent=bool(events) and bool(settings.sink or settings.dapr_http_port),
            created_at=ctx.now,
            expires_at=ctx.now + self.services.settings.receipt_ttl,
            version=previous.version if previous is not None else 0,
        )

    def dapr_topic(self, type_: str) -> str:
        overrides = self.services.settings.dapr_topics
        return overrides.get(type_) or self.function.dapr_publish.get(type_) or type_


def bind(function: Function) -> Callable[[Request], Awaitable[Response]]:
    """The functions-framework target for `function` (ASGI, `http` signature)."""
    import functions_framework.aio

    app = App(function)

    @functions_framework.aio.http
    async def handle(request: Request) -> Response:
        return await app(request)

    handle.app = app  # type: ignore[attr-defined] - tests and tools reach the state through it
    return handle
