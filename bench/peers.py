"""Peers the functions talk to during a benchmark, each in its own process so it can be
pinned away from the server under test:

- `backend`: the todo app's API as the seed's services call it (`POST /api/tasks`), a
  minimal asyncio HTTP server that answers every request at once; `GET /_count` says how
  many POSTs it took, so a benchmark can check the work was really done;
- `smtp`: an SMTP server that accepts and discards every message (`nextup_dev.smtp`);
- `moto`: moto's own server speaking the DynamoDB API (`nextup_dev.moto`);
- `stores`: the settings of each store kind (`nextup_dev.stores`), with moto if needed.

    python -m bench.peers backend PORT
    python -m bench.peers smtp PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.procs import Server, free_port, pin
from nextup_dev.moto import MotoServer, aws_env
from nextup_dev.smtp import SmtpServer
from nextup_dev.stores import SQLITE, STORE_KINDS, store_url

__all__ = ["STORE_KINDS", "aws_env", "backend", "backend_posts_at", "moto", "smtp", "stores"]

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
    server = SmtpServer(port).start()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def backend(cpu: int | None = None) -> Server:
    port = free_port()
    server = Server("backend", [sys.executable, "-m", "bench.peers", "backend", str(port)], port)
    server.start("/_count")
    _pin(server.tree(), cpu)
    return server


def backend_posts_at(url: str) -> int:
    """How many POSTs the backend at `url` has taken so far."""
    with urllib.request.urlopen(url + "/_count", timeout=5) as answer:
        return json.load(answer)["posts"]


def smtp(cpu: int | None = None) -> Server:
    port = free_port()
    server = Server("smtp", [sys.executable, "-m", "bench.peers", "smtp", str(port)], port)
    server.start(ready_path=None)
    _pin(server.tree(), cpu)
    return server


def moto(cpu: int | None = None) -> MotoServer:
    """moto's own server (not the tests' one-at-a-time server: as fast as moto goes)."""
    server = MotoServer(atomic=False).start()
    _pin([server.pid] if server.pid else [], cpu)
    return server


@contextlib.contextmanager
def stores(kinds: tuple[str, ...], workdir: Path, prefix: str) -> Iterator[dict[str, dict]]:
    """{kind: the settings a function needs for a fresh store of that kind}; a moto server
    for as long as DynamoDB is among them."""
    server = moto() if any(kind != SQLITE for kind in kinds) else None
    try:
        settings = {}
        for kind in kinds:
            settings[kind] = {"NEXTUP_STORE_URL": store_url(kind, workdir, prefix=prefix)}
            if kind != SQLITE:
                assert server is not None
                settings[kind].update(aws_env(server.url))
        yield settings
    finally:
        if server is not None:
            server.stop()


def _pin(pids: list[int], cpu: int | None) -> None:
    pin(pids, None if cpu is None else {cpu})


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
