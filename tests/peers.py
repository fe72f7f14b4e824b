"""Real peers for tests, started as subprocesses: a moto server speaking the DynamoDB API
(with DynamoDB's atomic conditional writes: see `motoserver`).

A peer that does not come up is an error, never a skip: a green run must mean the tests
ran against it. Each pytest-xdist worker starts its own server (session scope).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 30.0
MOTO_SERVER = Path(__file__).with_name("motoserver.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is serving
    except OSError:
        return False


class _ExitedEarly(RuntimeError):
    pass


class MotoServer:
    """`python -m moto.server` on a free loopback port; `endpoint` once `start` returns."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self, timeout: float = START_TIMEOUT, attempts: int = 3) -> str:
        """Start it on a free port; retry when someone took the port meanwhile."""
        for attempt in range(attempts):
            try:
                return self.start_on(free_port(), timeout)
            except _ExitedEarly:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start_on(self, port: int, timeout: float = START_TIMEOUT) -> str:
        """Start it on `port` (e.g. to bring a peer back where clients expect it) and wait
        until it answers HTTP."""
        # Logs go to a file: a pipe nobody reads fills up and stalls the server.
        self.process = subprocess.Popen(
            [sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not _answers(f"{self.endpoint}/moto-api/"):
            if self.process.poll() is not None:
                raise _ExitedEarly(
                    f"moto server exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"moto server did not answer within {timeout:.0f} s:\n{log}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)  # a short pause that also notices an early exit
        return self.endpoint

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server for this test session (this xdist worker)."""
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()
