"""Peers the functions talk to during a benchmark, each in its own process so it can be
pinned away from the server under test:

- `backend`: the todo app's API as the seed's services call it (`POST /api/tasks`), a
  minimal asyncio HTTP server that answers every request at once; `GET /_count` says how
  many POSTs it took, so a benchmark can check the work was really done;
- `smtp`: an aiosmtpd server that accepts and discards every message;
- `moto`: moto's server speaking the DynamoDB API.

    python -m bench.peers backend PORT
    python -m bench.peers smtp PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.request

from bench.procs import Server, free_port

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
CREATED = b'{"task_id":"created"}'


class _Backend(asyncio.Protocol):
    posts = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = CONTENT_LENGTH.search(bytes(self.buffer[: end + 2]))
            total = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < total:
                return
            request_line = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[:total]
            if request_line.startswith(b"POST"):
                _Backend.posts += 1
                self._answer(b"201 Created", CREATED)
            elif request_line.startswith(b"GET /_count"):
                self._answer(b"200 OK", json.dumps({"posts": _Backend.posts}).encode())
            else:
                self._answer(b"200 OK", b"{}")

    def _answer(self, status: bytes, body: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 "
            + status
            + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


async def _serve_backend(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Backend, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _serve_smtp(port: int) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def backend(cpu: int | None = None) -> Server:
    port = free_port()
    server = Server("backend", [sys.executable, "-m", "bench.peers", "backend", str(port)], port)
    server.start("/_count")
    _pin(server, cpu)
    return server


def backend_posts_at(url: str) -> int:
    """How many POSTs the backend at `url` has taken so far."""
    with urllib.request.urlopen(url + "/_count", timeout=5) as answer:
        return json.load(answer)["posts"]


def smtp(cpu: int | None = None) -> Server:
    port = free_port()
    server = Server("smtp", [sys.executable, "-m", "bench.peers", "smtp", str(port)], port)
    server.spawn()
    _wait_tcp(server)
    _pin(server, cpu)
    return server


def moto(cpu: int | None = None) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = Server("moto", argv, port)
    server.start("/moto-api/")
    _pin(server, cpu)
    return server


def aws_env(endpoint: str) -> dict[str, str]:
    """What a function needs to reach moto's DynamoDB (dummy credentials)."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }


def _pin(server: Server, cpu: int | None) -> None:
    from bench.procs import pin

    pin(server.tree(), None if cpu is None else {cpu})


def _wait_tcp(server: Server, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            if server.process is not None and server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.log()}") from None
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{server.name} did not listen within {timeout:.0f} s") from None
            time.sleep(0.02)


def main(argv: list[str]) -> int:
    kind, port = argv[0], int(argv[1])
    if kind == "backend":
        asyncio.run(_serve_backend(port))
    elif kind == "smtp":
        _serve_smtp(port)
    else:
        raise SystemExit(f"unknown peer {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
