"""An at-least-once broker in miniature, with Knative's delivery rules, for driving real
function processes hard: many deliveries at once, in random order, duplicated.

- Deliveries are taken from the queue in random order by `concurrency` workers.
- 2xx is done; a 200 that carries a CloudEvent (binary mode) is a reply, published back:
  routed to every function declared to consume its type (`nextup.functions`; each copy
  `reply_copies` times), or kept in `emitted` when no running function consumes it.
- 5xx, 404, 408, 409, 429 and transport errors are retried with exponential backoff (and
  the answer's `Retry-After`, capped), up to `max_attempts`; any other status is a dead
  letter. Dead letters and every answer are kept for the test to check.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from nextup.errors import KNATIVE_RETRIED, retried_by_broker
from nextup.functions import ALL

RETRIED = KNATIVE_RETRIED


def _routes() -> dict[str, tuple[str, ...]]:
    """Each type and the functions declared to consume it (nextup.functions), in order."""
    routes: dict[str, tuple[str, ...]] = {}
    for function in ALL.values():
        for type_ in function.consumes:
            routes[type_] = (*routes.get(type_, ()), function.name)
    return routes


ROUTES = _routes()


@dataclass
class Delivery:
    function: str
    headers: dict[str, str]
    body: bytes
    attempt: int = 0

    @property
    def type(self) -> str:
        return self.headers.get("ce-type", "")

    @property
    def id(self) -> str:
        return self.headers.get("ce-id", "")


@dataclass
class Answer:
    delivery: Delivery
    status: int | None
    ms: float
    body: bytes
    retry_after: float | None = None


@dataclass
class Stats:
    posts: int = 0
    statuses: Counter = field(default_factory=Counter)
    retries: int = 0
    replies: int = 0
    dead: list[Answer] = field(default_factory=list)
    emitted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def latencies(self, predicate: Callable[[Answer], bool] = lambda a: True) -> list[float]:
        return sorted(a.ms for a in self.answers if predicate(a))


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def retryable(status: int | None) -> bool:
    return retried_by_broker(status)


def reply_of(response: httpx.Response) -> tuple[dict[str, str], bytes] | None:
    if response.status_code != 200 or "ce-type" not in response.headers:
        return None
    headers = {
        k: v for k, v in response.headers.items() if k.startswith("ce-") or k == "content-type"
    }
    return headers, response.content


class MiniBroker:
    def __init__(
        self,
        urls: dict[str, str],
        *,
        concurrency: int = 24,
        reply_copies: int = 1,
        max_attempts: int = 40,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        seed: int = 1,
        timeout: float = 30.0,
    ) -> None:
        self.urls = urls
        self.concurrency = concurrency
        self.reply_copies = reply_copies
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.random = random.Random(seed)
        self.timeout = timeout
        self.stats = Stats()

    def deliveries(self, headers: dict[str, str], body: bytes) -> list[Delivery]:
        """One delivery per function (among those running) that consumes the event's type,
        as a broker has one Trigger per consumer."""
        consumers = ROUTES.get(headers.get("ce-type", ""), ())
        return [Delivery(f, dict(headers), body) for f in consumers if f in self.urls]

    def delivery(self, headers: dict[str, str], body: bytes) -> Delivery | None:
        """The delivery of an event that one running function consumes (None: none does)."""
        found = self.deliveries(headers, body)
        if len(found) > 1:
            names = [d.function for d in found]
            raise AssertionError(f"{headers.get('ce-type')} goes to {names}: use deliveries()")
        return found[0] if found else None

    def run(self, deliveries: list[Delivery], deadline: float = 300.0) -> Stats:
        asyncio.run(self._run(list(deliveries), deadline))
        return self.stats

    async def _run(self, queue: list[Delivery], deadline: float) -> None:
        started = time.monotonic()
        stop_at = started + deadline
        waiting = 0  # deliveries sleeping out a backoff
        busy = 0
        wake = asyncio.Event()
        timers: set[asyncio.Future] = set()
        limits = httpx.Limits(max_connections=self.concurrency * 2)

        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:

            def put(delivery: Delivery) -> None:
                queue.append(delivery)
                wake.set()

            async def later(delivery: Delivery, delay: float) -> None:
                nonlocal waiting
                await asyncio.sleep(delay)
                waiting -= 1
                put(delivery)
                timers.discard(asyncio.current_task())

            async def worker() -> None:
                nonlocal waiting, busy
                while True:
                    if not queue:
                        if busy == 0 and waiting == 0:
                            wake.set()
                            return
                        wake.clear()
                        await wake.wait()
                        continue
                    if time.monotonic() > stop_at:
                        raise AssertionError(
                            f"broker run exceeded {deadline:.0f} s with {len(queue)} queued"
                        )
                    delivery = queue.pop(self.random.randrange(len(queue)))
                    busy += 1
                    try:
                        answer, reply = await self._post(client, delivery)
                    finally:
                        busy -= 1
                    if reply is not None:
                        self.stats.replies += 1
                        routed = self.deliveries(*reply)
                        if not routed:
                            self.stats.emitted.append(reply)
                        for one in routed:
                            for _ in range(self.reply_copies):
                                put(Delivery(one.function, dict(one.headers), one.body))
                    if retryable(answer.status):
                        if delivery.attempt + 1 >= self.max_attempts:
                            self.stats.dead.append(answer)
                        else:
                            self.stats.retries += 1
                            delay = min(self.max_backoff, self.backoff * 2**delivery.attempt)
                            if answer.retry_after:
                                delay = min(self.max_backoff, max(delay, answer.retry_after))
                            delivery.attempt += 1
                            waiting += 1
                            delay *= 0.5 + self.random.random()
                            timers.add(asyncio.ensure_future(later(delivery, delay)))
                    elif not 200 <= answer.status < 300:
                        self.stats.dead.append(answer)
                    if not queue and busy == 0 and waiting == 0:
                        wake.set()

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        self.stats.seconds += time.monotonic() - started

    async def _post(
        self, client: httpx.AsyncClient, delivery: Delivery
    ) -> tuple[Answer, tuple[dict[str, str], bytes] | None]:
        self.stats.posts += 1
        started = time.perf_counter()
        try:
            response = await client.post(
                self.urls[delivery.function],
                headers={**delivery.headers, "prefer": "reply"},
                content=delivery.body,
            )
        except httpx.TransportError as exc:
            detail = f"{type(exc).__name__}: {exc}".encode()
            answer = Answer(delivery, None, (time.perf_counter() - started) * 1000, detail)
            self.stats.statuses[None] += 1
            self.stats.answers.append(answer)
            return answer, None
        ms = (time.perf_counter() - started) * 1000
        retry_after = response.headers.get("retry-after")
        answer = Answer(
            delivery,
            response.status_code,
            ms,
            response.content if response.status_code >= 300 else b"",
            float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
        self.stats.statuses[response.status_code] += 1
        self.stats.answers.append(answer)
        return answer, reply_of(response)
