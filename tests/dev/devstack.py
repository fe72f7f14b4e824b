"""`nextup dev` as a test peer: the real command in its own process, on free ports, with
its state (store, mail, dead letters, logs) under a temporary directory.

Waiting is on conditions (`/healthz`, `/status`, files, the store) with deadlines; a stack
that does not come up fails the test. `stop()` sends SIGINT, as Ctrl-C does, and checks
that every process it started is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from harness import ROOT, wait_until
from peers import free_port

START_TIMEOUT = 90.0


def wait_for(predicate, timeout: float, message: str, every: float = 0.25):
    """`harness.wait_until` at a gentler pace, for conditions that cost the stack under test
    CPU to answer (a /status request, listing tasks): the load test shares two cores."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        pause.wait(every)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it runs nothing and holds no port.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


class DevStack:
    def __init__(self, workdir: Path, *args: str, eventing: Path | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.state_dir = workdir / ".nextup"
        self.store_url = f"sqlite:///{workdir / 'state.db'}"
        self.args = list(args)
        if eventing is not None:
            self.args += ["--eventing", str(eventing)]
        self.base = f"http://127.0.0.1:{self.port}"
        self.ingress = f"{self.base}/nextup/nextup"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "nextup-dev.out"
        self.pids: set[int] = set()

    def start(self) -> DevStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "nextup.cli", "dev", "--port", str(self.port)]
        argv += ["--state-dir", str(self.state_dir), "--store", self.store_url, *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nextup dev exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop(check=False)
                raise RuntimeError(
                    f"nextup dev not healthy in {START_TIMEOUT:.0f} s:\n{self.log()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.1)
        self.remember_pids()
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "dev.json").read_text())

    def remember_pids(self) -> None:
        state = self.state()
        self.pids |= {pid for pid in state["pids"].values() if pid}

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/status", timeout=5).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def post(self, headers: dict, body: bytes, path: str = "/nextup/nextup") -> httpx.Response:
        return httpx.post(self.base + path, headers=headers, content=body, timeout=10)

    def post_many(self, events: Iterable[tuple[dict, bytes]], concurrency: int = 32) -> None:
        """Post every event through the ingress; each must be accepted (202)."""

        async def run() -> None:
            gate = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:

                async def one(headers: dict, body: bytes) -> None:
                    async with gate:
                        response = await client.post(
                            "/nextup/nextup", headers=headers, content=body
                        )
                    assert response.status_code == 202, response.text

                await asyncio.gather(*(one(h, b) for h, b in events))

        asyncio.run(run())

    def drained(self) -> bool:
        """Every Trigger has committed every record on the broker topic: all dispatched."""
        status = self.status()
        return all(t["committed"] >= status["records"] for t in status["triggers"].values())

    def wait_drained(self, timeout: float = 60.0) -> dict[str, Any]:
        wait_for(self.drained, timeout, "every Trigger to dispatch every record")
        return self.status()

    def dead_letters(self) -> list[dict[str, Any]]:
        directory = self.state_dir / "dead-letters"
        return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]

    def mails(self) -> list[Path]:
        return sorted((self.state_dir / "mail").glob("*.eml"))

    def stop(self, check: bool = True) -> None:
        """Ctrl-C: SIGINT to `nextup dev` alone; it must stop every child and exit 0."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.remember_pids()
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"nextup dev did not stop within 60 s:\n{self.log()}") from None
        if check:
            assert code == 0, f"nextup dev exited with {code}:\n{self.log()}"
            left = [pid for pid in self.pids if alive(pid)]
            assert not left, f"processes left behind: {left}"


__all__ = ["ROOT", "DevStack", "alive", "wait_for", "wait_until"]
