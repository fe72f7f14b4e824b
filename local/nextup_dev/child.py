"""`nextup dev` as a child process: for integration tests and benchmarks (ours, or a
user's own), which want the real command on free ports with its state in a directory
they throw away.

    with DevChild(tmp_path, "--quiet") as dev:
        httpx.post(dev.ingress, headers=..., content=...)
        wait until dev.drained()

`stop()` sends SIGINT, as Ctrl-C does, so the stack shuts itself down the way a person's
would; only if it does not exit in time is it killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
INGRESS_PATH = "/nextup/nextup"  # the broker `nextup` in namespace `nextup` (eventing/)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevChild:
    def __init__(self, workdir: Path, *args: str, start_timeout: float = START_TIMEOUT):
        self.workdir = workdir
        self.port = free_port()
        self.state_dir = workdir / ".nextup"
        self.store_url = f"sqlite:///{workdir / 'state.db'}"
        self.args = list(args)
        self.base = f"http://127.0.0.1:{self.port}"
        self.ingress = self.base + INGRESS_PATH
        self.log_path = workdir / "nextup-dev.out"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DevChild:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DevChild:
        """Start it and wait until `/healthz` says every part is up; RuntimeError (with the
        end of its output) if it exits or is not healthy in time."""
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
        deadline = time.monotonic() + self.start_timeout
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nextup dev exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"nextup dev not healthy in {self.start_timeout:.0f} s:\n{self.log()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.1)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def state(self) -> dict[str, Any]:
        """`dev.json`: the pids of every part, the Kafka address, the broker topics."""
        return json.loads((self.state_dir / "dev.json").read_text())

    def status(self) -> dict[str, Any]:
        """`GET /status`: records on the broker topics and each Trigger's counts."""
        with urllib.request.urlopen(self.base + "/status", timeout=10) as answer:
            return json.load(answer)

    def drained(self, status: dict[str, Any] | None = None) -> bool:
        """Every Trigger has committed every record on its broker topic: all dispatched,
        and every count of them already in the status."""
        status = status or self.status()
        return bool(status.get("drained"))

    def log(self, tail: int = 8000) -> str:
        """The end of its output."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ctrl-C, then wait for it to exit: its exit code (None if it was not running).
        Killed, and TimeoutError raised, if it does not exit within `timeout`."""
        process = self.process
        if process is None or process.poll() is not None:
            return None
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise TimeoutError(
                f"nextup dev did not stop within {timeout:.0f} s:\n{self.log()}"
            ) from None
