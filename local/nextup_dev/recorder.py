"""A real HTTP server recording every request, on loopback: the tests' stand-in for the
todo app's backend, webhooks, sinks, subscribers and issuers (HTTP, or HTTPS with a
server SSLContext of the caller's), and what a benchmark or `nextup dev` user can point
a function at to see what it sends.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # The client's (host, port): which connection, and so which process, sent it.
    client: tuple[str, int] = ("", 0)

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server with a real listen queue (http.server's is 5: a burst of
    connections would see some dropped), quiet about clients that hung up first."""

    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class HttpRecorder:
    """A real HTTP server recording every request; `respond` decides each answer.

    `host` and `port` choose where it listens (any 127.x address is loopback); with
    `tls` (a server SSLContext, see `TestCA`) it speaks HTTPS and records the server
    name each client asked for (SNI) in `server_names`.
    """

    respond: Callable[[Recorded], tuple[int, dict[str, str], bytes]] = field(
        default=lambda r: (200, {"content-type": "application/json"}, b"{}")
    )
    requests: list[Recorded] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    server_names: list[str | None] = field(default_factory=list)

    def start(self, port: int | None = None) -> HttpRecorder:
        """Listen on `port` (default: the field's, 0 for any free one)."""
        if port is not None:
            self.port = port
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    self.client_address[:2],
                )
                recorder.requests.append(request)
                status, headers, body = recorder.respond(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_OPTIONS = do_PUT = do_DELETE = do_CONNECT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        scheme = "http"
        if self.tls is not None:

            def named(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
                recorder.server_names.append(name)

            self.tls.sni_callback = named
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{self.host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
