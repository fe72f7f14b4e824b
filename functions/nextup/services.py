"""The dependencies a function talks to, opened lazily once per process.

Every call goes through `resilience.call` with its dependency's entry in
`nextup.dependencies` (retries, breaker, what is transient), inside the time budget of
the call and the deadline of the event, so a handler only ever sees success, a client
error, or `Unavailable` (503: the broker redelivers later). Mail and webhooks may also
fail for one recipient alone (`notify.PermanentFailure`, `notify.RecipientUnavailable`);
webhooks share no breaker, as each is a server of its own. Nothing is opened at import
time: a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nextup import dependencies, resilience
from nextup.config import Settings
from nextup.envelope import CloudEvent
from nextup.errors import Unavailable
from nextup.events import Check
from nextup.resilience import CircuitBreaker, call

if TYPE_CHECKING:  # imported where used: a cold start pays only for what its event needs
    import httpx

    from nextup import notify

T = TypeVar("T")
CHECK_TIMEOUT = 2.0
# How long a dependency's check answers for it: probes from kubelet, OpenFaaS and the
# health canary (and anyone who can reach /health/readiness) cost one real check each
# this often at most, never one SMTP session per GET.
CHECK_TTL = 5.0


class Services:
    def __init__(self, settings: Settings, function: str) -> None:
        self.settings = settings
        self.function = function
        self.source = settings.source or f"/nextup/{function}"
        self._resolved: dict[str, dependencies.Resolved] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._store = None
        self._http: httpx.AsyncClient | None = None
        self._mailer: notify.Mailer | None = None
        # Dependency -> (when it was checked, the check, or the check under way).
        self._checked: dict[str, tuple[float, asyncio.Future[Check]]] = {}

    # Plumbing

    def dependency(self, name: str) -> dependencies.Resolved:
        """The dependency's entry with this process's settings applied."""
        if name not in self._resolved:
            self._resolved[name] = dependencies.resolve(name, self.settings)
        return self._resolved[name]

    def breaker(self, name: str) -> CircuitBreaker:
        """The dependency's breaker, shared by every call in this process (KeyError for a
        dependency that has none, like webhooks)."""
        if name not in self._breakers:
            breaker = self.dependency(name).new_breaker()
            if breaker is None:
                raise KeyError(f"{name} has no breaker")
            self._breakers[name] = breaker
        return self._breakers[name]

    async def _guarded(
        self, name: str, operation: Callable[[], Awaitable[T]], *, bounded: bool = True
    ) -> T:
        resolved = self.dependency(name)
        return await call(
            operation,
            breaker=self.breaker(name) if resolved.failures is not None else None,
            policy=resolved.policy,
            classify=resolved.dependency.classify,
            bounded=bounded,
            name=name,
        )

    def timeout(self, name: str) -> float:
        """Seconds one request to `name` may take, from the table."""
        timeout = dependencies.DEPENDENCIES[name].timeout
        assert timeout is not None, name
        return timeout

    @property
    def can_emit_many(self) -> bool:
        """Whether a delivery can send out several events: through K_SINK or a Dapr
        sidecar; otherwise the one reply is all it has."""
        return bool(self.settings.sink or self.settings.dapr_http_port)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    # Store

    @property
    def store(self):
        if self._store is None:
            from nextup.store import open_store

            self._store = open_store(self.settings.store_url)
        return self._store

    async def db(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call with retries and the store's breaker: a local store's on the
        event loop (an SQLite call costs less than the hop to a thread), a remote one's
        in a thread."""
        call_store = functools.partial(method, *args, **kwargs)
        if self.store.local:

            async def inline() -> T:
                return call_store()

            return await self._guarded("store", inline, bounded=False)
        return await self._guarded("store", lambda: asyncio.to_thread(call_store))

    # Mail, webhooks, sink, backend

    @property
    def mailer(self) -> notify.Mailer | None:
        if self._mailer is None and self.settings.smtp_url:
            from nextup import notify

            password = self.settings.smtp_password
            config = notify.SmtpConfig.from_url(
                self.settings.smtp_url,
                sender=self.settings.smtp_from,
                password=password.get_secret_value() if password else None,
            )
            self._mailer = notify.Mailer(dataclasses.replace(config, timeout=self.timeout("smtp")))
        return self._mailer

    async def mail(self, to: str, message: notify.Message) -> None:
        mailer = self.mailer
        if mailer is None:
            raise Unavailable("no SMTP server configured (NEXTUP_SMTP_URL)", field="smtp")
        await self._guarded("smtp", lambda: asyncio.to_thread(mailer.send, to, message))

    async def webhook(self, url: str, message: notify.Message) -> None:
        from nextup import webhooks

        # No retries or breaker shared by all webhooks (`dependencies.WEBHOOKS`): each is
        # a server of its own, and one user's failing webhook must not hold back anyone
        # else's. Its one timeout ends at the event's deadline at the latest.
        left = resilience.remaining(self.settings.webhook_timeout)
        if left <= 0:
            raise resilience.DeadlineExceeded(
                "webhooks: the event's deadline has passed", field="webhooks"
            )
        timeout = min(self.settings.webhook_timeout, left)
        await webhooks.post(
            url,
            message,
            policy=webhooks.WebhookPolicy(self.settings.webhook_allow),
            timeout=timeout,
        )

    async def emit(self, event: CloudEvent) -> None:
        from nextup.emit import post

        sink = self.settings.sink
        if sink is None:
            raise RuntimeError("emit() needs a sink; without one the event is the reply")
        timeout = self.timeout("sink")
        await self._guarded("sink", lambda: post(self.http, sink, event, timeout=timeout))

    async def publish(self, event: CloudEvent, topic: str) -> None:
        """Publish an emitted event through the Dapr sidecar (`nextup.dapr`)."""
        from nextup import dapr

        port = self.settings.dapr_http_port
        if port is None:
            raise RuntimeError("publish() needs DAPR_HTTP_PORT")
        pubsub, timeout = self.settings.dapr_pubsub, self.timeout("dapr")
        await self._guarded(
            "dapr", lambda: dapr.publish(self.http, port, pubsub, topic, event, timeout=timeout)
        )

    async def backend_create_task(self, task: dict[str, Any], *, idempotency_key: str) -> None:
        from nextup import backend

        base, timeout = self.settings.backend_url, self.timeout("backend")
        if base:
            await self._guarded(
                "backend",
                lambda: backend.create_task(
                    self.http, base, task, idempotency_key=idempotency_key, timeout=timeout
                ),
            )

    async def backend_user_email(self, user_id: str) -> str | None:
        from nextup import backend

        base, timeout = self.settings.backend_url, self.timeout("backend")
        if not base:
            return None
        return await self._guarded(
            "backend", lambda: backend.user_email(self.http, base, user_id, timeout=timeout)
        )

    # Health

    def configured(self) -> tuple[str, ...]:
        """Every dependency of the function set that this process is configured to use."""
        return tuple(
            d.name
            for d in dependencies.DEPENDENCIES.values()
            if d.used is not None and d.used(self.settings)
        )

    def checks(self, names: tuple[str, ...]) -> dict[str, Callable[[], Awaitable[None]]]:
        """The readiness probes (each dependency's `probe` in the table) of the dependencies
        this function uses. Emitted events go through the Dapr sidecar when there is one
        and no sink, so the sidecar is probed for the sink then; an optional dependency
        that is not configured is not probed."""
        settings = self.settings
        probes: dict[str, Callable[[], Awaitable[None]]] = {}
        for name in names:
            if name == "sink" and settings.dapr_http_port and not settings.sink:
                name = "dapr"
            entry = dependencies.DEPENDENCIES[name]
            optional = name in ("dapr", "backend")
            if entry.probe is None or (optional and entry.used and not entry.used(settings)):
                continue
            probes[name] = getattr(self, entry.probe)
        return probes

    async def check_store(self) -> None:
        await asyncio.to_thread(self.store.ping)

    async def check_smtp(self) -> None:
        mailer = self.mailer
        if mailer is None:
            raise Unavailable("NEXTUP_SMTP_URL is not set", field="smtp")
        await asyncio.to_thread(mailer.ping)

    async def check_sink(self) -> None:
        if not self.settings.sink:
            raise Unavailable(
                "K_SINK is not set (nor DAPR_HTTP_PORT): this function may emit several "
                "events per delivery and can only reply with one",
                field="sink",
            )
        from nextup.emit import ping

        await ping(self.http, self.settings.sink, timeout=CHECK_TIMEOUT)

    async def check_dapr(self) -> None:
        from nextup import dapr

        assert self.settings.dapr_http_port is not None
        await dapr.ping(self.http, self.settings.dapr_http_port, timeout=CHECK_TIMEOUT)

    async def check_backend(self) -> None:
        import httpx

        try:
            await self.http.get(self.settings.backend_url, timeout=CHECK_TIMEOUT)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"backend unreachable: {type(exc).__name__}", field="backend"
            ) from exc

    async def run_checks(self, names: tuple[str, ...]) -> dict[str, Check]:
        """Every probe at once, each within CHECK_TIMEOUT; a failure names its cause. A
        check answers for CHECK_TTL seconds, and probes arriving while one is under way
        wait for it instead of starting their own."""

        async def one(probe: Callable[[], Awaitable[None]]) -> Check:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(probe(), CHECK_TIMEOUT)
            except Exception as exc:
                error = getattr(exc, "error", None) or str(exc) or type(exc).__name__
                return Check(ok=False, latency_ms=_ms(start), error=error[:300])
            return Check(ok=True, latency_ms=_ms(start))

        def cached(name: str, probe: Callable[[], Awaitable[None]]) -> asyncio.Future[Check]:
            now = time.monotonic()
            known = self._checked.get(name)
            if known is None or now - known[0] >= CHECK_TTL:
                known = (now, asyncio.ensure_future(one(probe)))
                self._checked[name] = known
            return known[1]

        probes = self.checks(names)
        results = await asyncio.gather(*(cached(n, p) for n, p in probes.items()))
        return dict(zip(probes, results, strict=True))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            self._store.close()


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
