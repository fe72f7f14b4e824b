"""Real local peers for function tests: an SMTP server (scriptable, keeping what it
received), a recording HTTP server (HTTP or HTTPS with certificates from a CA of the
test's own), a TCP peer that never answers, and the functions themselves as
functions-framework processes on loopback.

Waiting is always on a condition with a deadline, never a bare sleep; a peer that does
not come up fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from peers import free_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        event.wait(0.02)


@dataclass(frozen=True)
class Delivery:
    """One mail as the SMTP server received it: the envelope and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


# What a scripted MailServer does instead of accepting: an SMTP reply line, or HANG_UP.
HANG_UP = "hang up"
Script = Callable[[str, str], str | None]  # (verb: MAIL, RCPT or DATA, address) -> reply


class MailServer:
    """aiosmtpd on a loopback port, keeping every message it receives.

    `script(verb, address)` may answer MAIL, RCPT (address: the recipient) or DATA
    (address: the first recipient) with its own reply, e.g. "450 4.2.1 try later", or
    HANG_UP to drop the connection there; None accepts. Without SMTPUTF8 support,
    like many servers.
    """

    def __init__(self, port: int | None = None, *, script: Script | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        self.script = script or (lambda verb, address: None)
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def _scripted(self, server, verb: str, address: str) -> str | None:
        reply = self.script(verb, address)
        if reply == HANG_UP:
            server.transport.close()
            return "421 4.3.0 closing"  # never arrives: the connection is gone
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self._scripted(server, "MAIL", address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._scripted(server, "RCPT", address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self._scripted(server, "DATA", envelope.rcpt_tos[0] if envelope.rcpt_tos else "")
        if reply:
            return reply
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
            self.deliveries.append(
                Delivery(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content)
            )
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailServer:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def received_raw(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)


class RawPeer:
    """A TCP peer below any protocol. By default it never says a word: connections are
    taken by the kernel's backlog and left hanging. With `say` it accepts, sends those
    bytes (e.g. an SMTP greeting `421 busy`) and closes; with `reset` it closes with a
    TCP reset instead of a FIN."""

    def __init__(self, *, say: bytes | None = None, reset: bool = False) -> None:
        self.say = say
        self.reset = reset
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        if say is not None or reset:
            threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                if self.say:
                    conn.sendall(self.say)
                if self.reset:
                    # Linger 0: close() sends RST, not FIN.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


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

            do_GET = do_POST = do_OPTIONS = do_PUT = _serve

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


class TestCA:
    """A certificate authority of our own: server certificates for any names, and a
    client context that trusts them and nothing else."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._dir = Path(tempfile.mkdtemp(prefix="test-ca-"))
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nextup test CA")])
        now = datetime.now(UTC)
        self._name = name
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            # Key identifiers: Python 3.13 verifies strictly (VERIFY_X509_STRICT) and
            # refuses a chain without them.
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = self._dir / "ca.pem"
        self.ca_file.write_bytes(self._pem(self._cert))

    @staticmethod
    def _pem(cert: Any) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return cert.public_bytes(Encoding.PEM)

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server context presenting a certificate for `names` (DNS names only)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        path = self._dir / f"{uuid.uuid4().hex}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + self._pem(cert)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class FunctionProcess:
    """One function served by `functions-framework` in its own process, as in production."""

    def __init__(self, name: str, env: dict[str, str], port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> FunctionProcess:
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--source",
                str(ROOT / "functions" / self.name / "main.py"),
                "--target",
                "handle",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=env.get("NEXTUP_TEST_CWD", str(ROOT)),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/health/liveness", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not start within {START_TIMEOUT:.0f} s:\n{self.log()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-6000:]

    def log_lines(self) -> list[dict]:
        lines = []
        for line in Path(self._log.name).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# The credentials moto server takes; the endpoint is the test's own.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@dataclass
class FunctionGroup:
    """Function processes over one store, with the mail server and the HTTP recorder they
    talk to. `launch` initialises the store and starts each function with its own env;
    if one fails to start, everything started so far is stopped."""

    store_url: str
    env: dict[str, str]
    mail: MailServer
    web: HttpRecorder
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    store: Any = None  # nextup.store.Store, opened by `launch`

    def launch(self, names: tuple[str, ...], env_for: Callable[[str], dict[str, str]]) -> None:
        from nextup.store import open_store

        self.store = open_store(self.store_url)
        self.store.init()
        try:
            for name in names:
                self.functions[name] = FunctionProcess(name, env_for(name)).start()
        except Exception:
            self.stop()
            raise

    def url(self, name: str) -> str:
        return self.functions[name].url

    def urls(self) -> dict[str, str]:
        return {name: f.url for name, f in self.functions.items()}

    def log_lines(self) -> list[dict]:
        return [line for f in self.functions.values() for line in f.log_lines()]

    def stop(self) -> None:
        for process in self.functions.values():
            process.stop()
        self.mail.stop()
        self.web.stop()
        if self.store is not None:
            self.store.close()


def cloud_event(
    type_: str, data: Any, *, id_: str, source: str = "/tests", **extensions: str
) -> tuple[dict, bytes]:
    """Binary-mode headers and body for a CloudEvent."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": source,
        "ce-type": type_,
        "content-type": "application/json",
    }
    headers.update({f"ce-{k}": v for k, v in extensions.items()})
    return headers, json.dumps(data).encode()


def structured_event(
    type_: str, data: Any, *, id_: str, source: str = "/tests"
) -> tuple[dict, bytes]:
    envelope = {"specversion": "1.0", "id": id_, "source": source, "type": type_, "data": data}
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()
