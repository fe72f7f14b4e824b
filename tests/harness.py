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
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from nextup_dev import launcher
from nextup_dev.moto import AWS_TEST_ENV
from nextup_dev.processes import wait_until
from nextup_dev.recorder import HttpRecorder, Recorded
from nextup_dev.smtp import HANG_UP, Delivery, RecordingSmtp, Script

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
# False while a test marked `fast` runs (tests/conftest.py): it may start no function process.
processes_allowed = True


# The tests' SMTP server: keeps what it receives, scriptable (`nextup_dev.smtp`).
MailServer = RecordingSmtp


def recorder_fixture(respond: Callable[[], Callable[[Recorded], Any]]) -> Any:
    """A module-scoped fixture `recorder`: an `HttpRecorder` answering with `respond()`."""

    @pytest.fixture(name="recorder", scope="module")
    def serving() -> Any:
        with HttpRecorder(respond=respond()) as server:
            yield server

    return serving


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


class FunctionProcess(launcher.FunctionProcess):
    """One function served by `functions-framework` in its own process, as in production:
    from its own entry point (`functions/<name>/main.py`)."""

    def __init__(self, name: str, env: dict[str, str], port: int | None = None) -> None:
        super().__init__(
            name,
            env,
            port,
            source=ROOT / "functions" / name / "main.py",
            cwd=env.get("NEXTUP_TEST_CWD", str(ROOT)),
            start_timeout=START_TIMEOUT,
        )

    def spawn(self) -> Any:
        assert processes_allowed, (
            f"a test marked fast started {self.name} as a process: use in_process (inprocess.py)"
        )
        return super().spawn()


@dataclass
class FunctionGroup:
    """Functions over one store, with the mail server and the HTTP recorder they talk to.
    `launch` initialises the store and starts each function with its own env; if one
    fails to start, everything started so far is stopped.

    Each function is a functions-framework process, or with `in_process` the same
    function in this process (`inprocess`: the fast layer). Either way a test reaches
    them through `client()` (or `transport`) at `url(name)`.
    """

    store_url: str
    env: dict[str, str]
    mail: MailServer | None  # None: the functions are given no SMTP server
    web: HttpRecorder | None  # None: nor an HTTP server
    functions: dict[str, Any] = field(default_factory=dict)  # FunctionProcess or in-process
    store: Any = None  # nextup.store.Store, opened by `launch`
    in_process: bool = False
    loop: Any = None  # inprocess.Loop, with `in_process`
    transport: Any = None  # httpx.BaseTransport to the functions; None: the network
    async_transport: Any = None  # the same for an httpx.AsyncClient
    _caller: Any = None

    def launch(self, names: tuple[str, ...], env_for: Callable[[str], dict[str, str]]) -> None:
        from nextup.store import open_store

        self.store = open_store(self.store_url)
        self.store.init()
        if self.in_process and self.loop is None:
            import inprocess

            self.loop = inprocess.Loop()
            self.transport = inprocess.Bridge(self.loop)
            self.async_transport = inprocess.AsyncBridge(self.transport)
        try:
            for name in names:
                self.functions[name] = self.function(name, env_for(name)).start()
        except Exception:
            self.stop()
            raise

    def function(self, name: str, env: dict[str, str]) -> Any:
        """Function `name` with its environment, not started."""
        if self.in_process:
            import inprocess

            return inprocess.InProcessFunction(name, env, self.loop)
        return FunctionProcess(name, env)

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client that reaches the functions (close it, or use it in `with`)."""
        return httpx.Client(transport=self.transport, **{"timeout": 30, **options})

    @property
    def caller(self) -> httpx.Client:
        """One `client()` for the test's calls, closed with the group."""
        if self._caller is None:
            self._caller = self.client()
        return self._caller

    def url(self, name: str) -> str:
        return self.functions[name].url

    def urls(self) -> dict[str, str]:
        return {name: f.url for name, f in self.functions.items()}

    def log_lines(self) -> list[dict]:
        return [line for f in self.functions.values() for line in f.log_lines()]

    def stop(self, at_once: bool = False) -> None:
        """Stop the functions and the servers; `at_once`: the functions and the HTTP
        server in parallel (each process takes a while to wind down)."""
        stops = [f.stop for f in self.functions.values()]
        stops += [self.web.stop] if self.web is not None else []
        if at_once:
            threads = [threading.Thread(target=stop) for stop in stops]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for stop in stops:
                stop()
        if self.mail is not None:
            self.mail.stop()
        if self.store is not None:
            self.store.close()
        if self._caller is not None:
            self._caller.close()
            self._caller = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None


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


FIRST_COMPLETION = """
import asyncio, json, sys
import httpx
from functions_framework import create_app

app = create_app(target="handle", source=sys.argv[1])
headers = {"ce-specversion": "1.0", "ce-id": "done-1", "ce-source": "/tests",
           "ce-type": "todo.task.completed", "content-type": "application/json"}
body = json.dumps({"user_id": "u", "task_id": "t1", "completed_at": sys.argv[2]})

async def first():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)

answer = asyncio.run(first())
print(json.dumps({"status": answer.status_code, "type": answer.headers.get("ce-type"),
                  "modules": sorted(sys.modules)}))
"""


def first_completion(completed_at: datetime) -> dict[str, Any]:
    """complete-task's first event, the completion of user `u`'s task `t1` (stored
    beforehand, in the store the environment names), in a fresh interpreter: its answer's
    status and `ce-type`, and every module the process had loaded by then (what a cold
    start pays for)."""
    import subprocess
    import sys

    main = ROOT / "functions" / "complete-task" / "main.py"
    out = subprocess.run(
        [sys.executable, "-c", FIRST_COMPLETION, str(main), completed_at.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def structured_event(
    type_: str, data: Any, *, id_: str, source: str = "/tests"
) -> tuple[dict, bytes]:
    envelope = {"specversion": "1.0", "id": id_, "source": source, "type": type_, "data": data}
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


__all__ = [
    "AWS_TEST_ENV",
    "HANG_UP",
    "ROOT",
    "Delivery",
    "FunctionGroup",
    "FunctionProcess",
    "HttpRecorder",
    "MailServer",
    "RawPeer",
    "Recorded",
    "Script",
    "TestCA",
    "cloud_event",
    "first_completion",
    "recorder_fixture",
    "structured_event",
    "wait_until",
]
