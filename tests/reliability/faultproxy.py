"""A fault-injecting TCP proxy (asyncio), put between a function and one dependency.

It listens on a loopback port of its own and relays to the real peer (moto server, the
SMTP server, the sink), and on command it:

- adds latency to every chunk it relays (`latency`);
- stops listening, so connects are refused, and resets every open connection (`down()`
  until `up()`: an outage);
- resets a share of new connections at once (`reset_connect`);
- for HTTP peers, per request: resets the connection before the request reaches the peer
  (`reset_request`), or after the peer has handled it but before the answer gets back
  (`reset_response`: the write happened, the caller cannot know), or answers in the
  peer's place with DynamoDB's throttling error (`throttle`: HTTP 400 with a
  `ThrottlingException` or `ProvisionedThroughputExceededException` JSON body);
- for SMTP, resets the connection right after the message's final `.` went to the server,
  before its `250` gets back (`lose_smtp_reply`): the mail is delivered, the sender sees
  a failure and will send it again.

Decisions are random with a seeded generator, so a run can be repeated; every fault taken
is counted in `counts`. It runs its own event loop in a thread, so blocking tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

from nextup_dev.ports import free_port

THROTTLES = (
    ("ThrottlingException", "Rate of requests exceeds the allowed throughput."),
    (
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    ),
)


@dataclass
class Faults:
    latency: float = 0.0  # seconds added to every relayed chunk
    reset_connect: float = 0.0  # share of new connections reset at once
    reset_request: float = 0.0  # HTTP: share of requests whose connection is reset unsent
    reset_response: float = 0.0  # HTTP: share of handled requests whose answer is lost
    throttle: float = 0.0  # HTTP: share of requests answered with a DynamoDB throttle
    lose_smtp_reply: float = 0.0  # SMTP: share of messages whose 250 is lost

    def any(self) -> bool:
        return any(
            (
                self.latency,
                self.reset_connect,
                self.reset_request,
                self.reset_response,
                self.throttle,
                self.lose_smtp_reply,
            )
        )


@dataclass
class FaultProxy:
    upstream_port: int
    protocol: str = "tcp"  # "http" or "smtp" enable the per-request faults
    seed: int = 7
    faults: Faults = field(default_factory=Faults)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.port = free_port()
        self.url_host = f"127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control (from any thread) -------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def set(self, **faults: float) -> None:
        """Replace the faults in force (unnamed ones go back to none)."""
        self.faults = Faults(**faults)

    def down(self) -> None:
        """An outage: connects are refused and open connections are reset."""
        self._call(self._down())
        self.counts["outages"] += 1

    def up(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _chance(self, share: float) -> bool:
        return share > 0 and self.random.random() < share

    # -- server --------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        self.counts["reset_by_outage"] += len(self._writers) // 2
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        if self._chance(self.faults.reset_connect):
            self.counts["reset_connect"] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        try:
            if self.protocol == "http":
                await self._http(reader, writer, up_reader, up_writer)
            elif self.protocol == "smtp":
                await self._smtp(reader, writer, up_reader, up_writer)
            else:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _delay(self) -> None:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            await self._delay()
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    # -- HTTP: one request, one answer, on a keep-alive connection ------------------------

    async def _http(self, reader, writer, up_reader, up_writer) -> None:
        while True:
            request = await _read_message(reader)
            if request is None:
                return
            self.counts["requests"] += 1
            await self._delay()
            if self._chance(self.faults.reset_request):
                self.counts["reset_request"] += 1
                _reset(writer)
                return
            if self._chance(self.faults.throttle):
                code, message = self.random.choice(THROTTLES)
                self.counts["throttle"] += 1
                body = json.dumps(
                    {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
                ).encode()
                writer.write(
                    b"HTTP/1.1 400 Bad Request\r\n"
                    b"Content-Type: application/x-amz-json-1.0\r\n"
                    + f"x-amzn-ErrorType: {code}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                continue
            up_writer.write(request)
            await up_writer.drain()
            answer = await _read_message(up_reader, response=True)
            if answer is None:
                _reset(writer)
                return
            if self._chance(self.faults.reset_response):
                self.counts["reset_response"] += 1
                _reset(writer)
                return
            await self._delay()
            writer.write(answer)
            await writer.drain()

    # -- SMTP: relay lines, and lose the reply to a message's final dot ------------------

    async def _smtp(self, reader, writer, up_reader, up_writer) -> None:
        lose_next_reply = asyncio.Event()

        async def client_to_server() -> None:
            in_data = False
            while line := await reader.readline():
                await self._delay()
                up_writer.write(line)
                await up_writer.drain()
                if in_data and line == b".\r\n":
                    in_data = False
                    self.counts["messages"] += 1
                    if self._chance(self.faults.lose_smtp_reply):
                        lose_next_reply.set()
                elif line.upper().startswith(b"DATA"):
                    in_data = True

        async def server_to_client() -> None:
            while line := await up_reader.readline():
                if lose_next_reply.is_set() and line.startswith(b"250"):
                    self.counts["lost_smtp_reply"] += 1
                    _reset(writer)
                    return
                await self._delay()
                writer.write(line)
                await writer.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)


async def _read_message(reader: asyncio.StreamReader, response: bool = False) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length body (what boto3, httpx and moto send)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                break
        return head + body
    if response and head.startswith((b"HTTP/1.1 204", b"HTTP/1.1 304")):
        return head
    return head + (await reader.readexactly(length) if length else b"")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
