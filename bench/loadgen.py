"""A small HTTP/1.1 load generator: keep-alive connections, each request made unique from a
template, run as its own process so it can sit on the other core.

    python -m bench.loadgen < spec.json > result.json

The spec (`Spec`) holds one raw HTTP request as a template; every occurrence of `marker`
in it is replaced by the request's sequence number, zero-padded to the marker's width, and
every `tail` by its last digits, so each request carries its own CloudEvent id, task id and
user at no parsing cost and with a fixed Content-Length. Two modes:

- closed loop (`rate` unset): `connections` connections, each sending its next request as
  soon as the previous answer is in: the most the server does at that concurrency;
- open loop (`rate` set): request n is sent at ``start + n / rate`` (or as soon as a
  connection is free after that), as a producer posting at a steady rate would.

It stops after `duration` seconds or `limit` requests, whichever comes first. Latency is
from writing a request to reading the last byte of its answer. Answers must carry a
Content-Length or be chunked; the generator counts its own CPU time so a result can say
whether the generator, not the server, was the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)
CONNECT_TIMEOUT = 10.0
ANSWER_TIMEOUT = 60.0


@dataclass
class Spec:
    host: str
    port: int
    template: str  # one raw HTTP request, latin-1
    marker: str = "@@@@@@@"
    tail: str = "##"  # replaced by the sequence number's last len(tail) digits
    first: int = 0  # the first sequence number
    limit: int | None = None  # at most this many requests
    duration: float = 10.0
    connections: int = 16
    rate: float | None = None
    cpu: int | None = None  # pin the generator to this CPU
    keep: bool = False  # return (n, sent, answered, status) for every request


@dataclass
class Outcome:
    requests: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    per_second: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_s: float = 0.0
    cpu_share: float = 0.0  # the generator's CPU time / elapsed: near 1.0 means it was the limit
    records: list[list[float]] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `ask` writes a request and waits for its full answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self._complete()
        if status is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def _complete(self) -> int | None:
        """The status of the answer in the buffer once all of it is in (and drop it)."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[: end + 2])
        length = CONTENT_LENGTH.search(head)
        if length is not None:
            total = end + 4 + int(length.group(1))
        elif CHUNKED.search(head):
            last = self.buffer.find(b"\r\n0\r\n\r\n", end)
            if last < 0:
                return None
            total = last + 7
        else:
            total = end + 4  # no body (204, 304)
        if len(self.buffer) < total:
            return None
        del self.buffer[:total]
        return int(head[9:12])

    async def ask(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.waiter, ANSWER_TIMEOUT)


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def generate(spec: Spec) -> Outcome:
    template = spec.template.encode("latin-1")
    marker, tail = spec.marker.encode(), spec.tail.encode()
    width = len(spec.marker)
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    latencies: list[float] = []
    counter = spec.first
    end_number = spec.first + spec.limit if spec.limit is not None else None
    started = time.perf_counter()
    deadline = started + spec.duration
    last_answer = started

    def take() -> int | None:
        nonlocal counter
        if end_number is not None and counter >= end_number:
            return None
        number, counter = counter, counter + 1
        return number

    async def worker() -> None:
        nonlocal last_answer
        connection: _Connection | None = None
        while True:
            number = take()
            if number is None or time.perf_counter() >= deadline:
                break
            if spec.rate is not None:
                due = started + (number - spec.first) / spec.rate
                if due >= deadline:
                    break
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            digits = str(number).zfill(width).encode()
            request = template.replace(marker, digits).replace(tail, digits[-len(tail) :])
            sent_wall, sent = time.time(), time.perf_counter()
            try:
                if connection is None or connection.transport.is_closing():  # type: ignore[union-attr]
                    _, connection = await asyncio.wait_for(
                        loop.create_connection(_Connection, spec.host, spec.port),
                        CONNECT_TIMEOUT,
                    )
                status = await connection.ask(request)
            except (OSError, TimeoutError) as exc:
                name = type(exc).__name__
                outcome.errors[name] = outcome.errors.get(name, 0) + 1
                outcome.requests += 1
                if connection is not None and connection.transport is not None:
                    connection.transport.close()
                connection = None
                continue
            answered = time.perf_counter()
            last_answer = answered
            outcome.requests += 1
            outcome.statuses[str(status)] = outcome.statuses.get(str(status), 0) + 1
            if 200 <= status < 300:
                outcome.ok += 1
                latencies.append(answered - sent)
            if spec.keep:
                outcome.records.append(
                    [number, sent_wall, sent_wall + (answered - sent), float(status)]
                )
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    cpu_before = _cpu()
    await asyncio.gather(*(worker() for _ in range(spec.connections)))
    outcome.elapsed_s = round(last_answer - started, 4)
    outcome.cpu_s = round(_cpu() - cpu_before, 3)
    if outcome.elapsed_s > 0:
        outcome.per_second = round(outcome.ok / outcome.elapsed_s, 1)
        outcome.cpu_share = round(outcome.cpu_s / outcome.elapsed_s, 3)
    ordered = sorted(latencies)
    for name, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("max_ms", 1.0)):
        value = _percentile(ordered, q)
        setattr(outcome, name, None if value is None else round(value * 1000, 3))
    return outcome


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(spec: Spec) -> Outcome:
    if spec.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {spec.cpu})
    return asyncio.run(generate(spec))


def in_process(spec: dict) -> dict:
    """Run a load generator for `spec` in a process of its own (`python -m bench.loadgen`,
    pinned by the spec's `cpu` if given) and return its outcome."""
    import subprocess
    from pathlib import Path

    answer = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout)


def main() -> int:
    spec = Spec(**json.load(sys.stdin))
    json.dump(asdict(run(spec)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
