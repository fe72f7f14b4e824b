"""The dependencies a function talks to, opened lazily once per process.

Every call goes through `resilience.call`: retries inside the event's time budget and a
circuit breaker per dependency, so a handler only ever sees success, a client error, or
`Unavailable` (503: the broker redelivers later). Mail and webhooks may also fail for one
recipient alone (`notify.PermanentFailure`, `notify.RecipientUnavailable`); webhooks
share no breaker, as each is a server of its own. Nothing is opened at import time:
a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nextup.config import Settings
from nextup.envelope import CloudEvent
from nextup.errors import Unavailable
from nextup.events import Check
from nextup.resilience import CircuitBreaker, RetryPolicy, call

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
        self.policy = RetryPolicy(budget=settings.retry_budget)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._store = None
        self._http: httpx.AsyncClient | None = None
        self._mailer: notify.Mailer | None = None
        # Dependency -> (when it was checked, the check, or the check under way).
        self._checked: dict[str, tuple[float, asyncio.Future[Check]]] = {}

    # Plumbing

    def breaker(self, name: str) -> CircuitBreaker:
        if name not in self._breakers:
            self._breakers[name] = CircuitBreaker(
                name,
                failure_threshold=self.settings.breaker_failures,
                recovery_timeout=self.settings.breaker_recovery,
            )
        return self._breakers[name]

    async def _guarded(
        self,
        name: str,
        operation: Callable[[], Awaitable[T]],
        transient: tuple,
        *,
        bounded: bool = True,
    ) -> T:
        return await call(
            operation,
            breaker=self.breaker(name),
            policy=self.policy,
            transient=transient,
            bounded=bounded,
        )

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
        from nextup.store import StoreUnavailable

        call_store = functools.partial(method, *args, **kwargs)
        if self.store.local:

            async def inline() -> T:
                return call_store()

            return await self._guarded("store", inline, (StoreUnavailable,), bounded=False)
        return await self._guarded(
            "store", lambda: asyncio.to_thread(call_store), (StoreUnavailable,)
        )

    # Mail, webhooks, sink, backend

    @property
    def mailer(self) -> notify.Mailer | None:
        if self._mailer is None and self.settings.smtp_url:
            from nextup import notify

            password = self.settings.smtp_password
            self._mailer = notify.Mailer(
                notify.SmtpConfig.from_url(
                    self.settings.smtp_url,
                    sender=self.settings.smtp_from,
                    password=password.get_secret_value() if password else None,
                )
            )
        return self._mailer

    async def mail(self, to: str, message: notify.Message) -> None:
        from nextup import notify

        mailer = self.mailer
        if mailer is None:
            raise Unavailable("no SMTP server configured (NEXTUP_SMTP_URL)", field="smtp")
        await self._guarded(
            "smtp", lambda: asyncio.to_thread(mailer.send, to, message), notify.Mailer.TRANSIENT
        )

    async def webhook(self, url: str, message: notify.Message) -> None:
        from nextup import webhooks

        # No retries or breaker shared by all webhooks: each is a server of its own, and
        # one user's failing webhook must not hold back anyone else's.
        await webhooks.post(
            url,
            message,
            policy=webhooks.WebhookPolicy(self.settings.webhook_allow),
            timeout=self.settings.webhook_timeout,
        )

    async def emit(self, event: CloudEvent) -> None:
        from nextup.emit import post

        sink = self.settings.sink
        if sink is None:
            raise RuntimeError("emit() needs a sink; without one the event is the reply")
        await self._guarded(
            "sink", lambda: post(self.http, sink, event, timeout=5.0), (Unavailable,)
        )

    async def publish(self, event: CloudEvent, topic: str) -> None:
        """Publish an emitted event through the Dapr sidecar (`nextup.dapr`)."""
        from nextup import dapr

        port = self.settings.dapr_http_port
        if port is None:
            raise RuntimeError("publish() needs DAPR_HTTP_PORT")
        pubsub = self.settings.dapr_pubsub
        await self._guarded(
            "dapr",
            lambda: dapr.publish(self.http, port, pubsub, topic, event, timeout=5.0),
            (Unavailable,),
        )

    async def backend_create_task(self, task: dict[str, Any], *, idempotency_key: str) -> None:
        from nextup import backend

        base = self.settings.backend_url
        if base:
            await self._guarded(
                "backend",
                lambda: backend.create_task(
                    self.http, base, task, idempotency_key=idempotency_key, timeout=5.0
                ),
                (Unavailable,),
            )

    async def backend_user_email(self, user_id: str) -> str | None:
        from nextup import backend

        base = self.settings.backend_url
        if not base:
            return None
        return await self._guarded(
            "backend",
            lambda: backend.user_email(self.http, base, user_id, timeout=5.0),
            (Unavailable,),
        )

    # Health

    def configured(self) -> tuple[str, ...]:
        """Every dependency of the function set that this process is configured to use."""
        settings = self.settings
        present = {
            "store": True,
            "smtp": bool(settings.smtp_url),
            "sink": bool(settings.sink),
            "dapr": bool(settings.dapr_http_port),
            "backend": bool(settings.backend_url),
        }
        return tuple(name for name, used in present.items() if used)

    def checks(self, dependencies: tuple[str, ...]) -> dict[str, Callable[[], Awaitable[None]]]:
        """The readiness probes of the dependencies this function uses."""
        probes: dict[str, Callable[[], Awaitable[None]]] = {}
        for name in dependencies:
            if name == "store":
                probes[name] = lambda: asyncio.to_thread(self.store.ping)
            elif name == "smtp":
                probes[name] = self._check_smtp
            elif name == "sink" and self.settings.dapr_http_port and not self.settings.sink:
                probes["dapr"] = self._check_dapr  # emitted events go through the sidecar
            elif name == "sink":
                probes[name] = self._check_sink
            elif name == "dapr" and self.settings.dapr_http_port:
                probes[name] = self._check_dapr
            elif name == "backend" and self.settings.backend_url:
                probes[name] = self._check_backend
        return probes

    async def _check_smtp(self) -> None:
        mailer = self.mailer
        if mailer is None:
            raise Unavailable("NEXTUP_SMTP_URL is not set", field="smtp")
        await asyncio.to_thread(mailer.ping)

    async def _check_sink(self) -> None:
        if not self.settings.sink:
            raise Unavailable(
                "K_SINK is not set (nor DAPR_HTTP_PORT): this function may emit several "
                "events per delivery and can only reply with one",
                field="sink",
            )
        from nextup.emit import ping

        await ping(self.http, self.settings.sink, timeout=CHECK_TIMEOUT)

    async def _check_dapr(self) -> None:
        from nextup import dapr

        assert self.settings.dapr_http_port is not None
        await dapr.ping(self.http, self.settings.dapr_http_port, timeout=CHECK_TIMEOUT)

    async def _check_backend(self) -> None:
        import httpx

        try:
            await self.http.get(self.settings.backend_url, timeout=CHECK_TIMEOUT)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"backend unreachable: {type(exc).__name__}", field="backend"
            ) from exc

    async def run_checks(self, dependencies: tuple[str, ...]) -> dict[str, Check]:
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

        probes = self.checks(dependencies)
        results = await asyncio.gather(*(cached(n, p) for n, p in probes.items()))
        return dict(zip(probes, results, strict=True))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._store is not None:
            self._store.close()


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
