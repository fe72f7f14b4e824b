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

import json
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

from nextup_dev.ports import free_port
from nextup_dev.processes import ChildFailed, Supervised, http_answers

START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
INGRESS_PATH = "/nextup/nextup"  # the broker `nextup` in namespace `nextup` (eventing/)


class DevChild(Supervised):
    stop_signal = signal.SIGINT

    def __init__(self, workdir: Path, *args: str, start_timeout: float = START_TIMEOUT):
        self.workdir = workdir
        self.port = free_port()
        self.state_dir = workdir / ".nextup"
        self.store_url = f"sqlite:///{workdir / 'state.db'}"
        self.args = list(args)
        self.base = f"http://127.0.0.1:{self.port}"
        self.ingress = self.base + INGRESS_PATH
        argv = [sys.executable, "-m", "nextup.cli", "dev", "--port", str(self.port)]
        argv += ["--state-dir", str(self.state_dir), "--store", self.store_url, *self.args]
        super().__init__(
            "nextup dev",
            argv,
            env={"PYTHONUNBUFFERED": "1"},
            cwd=workdir,
            log_path=workdir / "nextup-dev.out",
            start_timeout=start_timeout,
            stop_timeout=STOP_TIMEOUT,
        )

    def start(self) -> DevChild:
        """Start it and wait until `/healthz` says every part is up; RuntimeError (with the
        end of its output) if it exits or is not healthy in time."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)  # this run's output only
        try:
            super().start()
        except ChildFailed as exc:
            raise RuntimeError(str(exc)) from None
        return self

    def ready(self) -> bool:
        return self.healthy()

    def healthy(self) -> bool:
        return http_answers(self.base + "/healthz", ok_only=True, timeout=2)

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

    def log(self, limit: int = 8000) -> str:
        """The end of its output."""
        return super().log(limit)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ctrl-C, then wait for it to exit: its exit code (None if it was not running).
        Killed, and TimeoutError raised, if it does not exit within `timeout`."""
        code = super().stop(timeout)
        if self.killed:
            raise TimeoutError(f"nextup dev did not stop within {timeout:.0f} s:\n{self.log()}")
        return code
