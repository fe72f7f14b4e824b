"""`nextup dev` for a benchmark: the real command in its own process, on free ports, its
state (SQLite store, logs, mail) under a temporary directory.

`stop()` sends SIGINT, as Ctrl-C does, waits for it to exit, then kills by pid any process
it had listed in `dev.json` that is somehow still running (the same process: checked by
its start time).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import children, free_port, kill_if_same, start_time

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class DevStack:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.state_dir = workdir / ".nextup"
        self.store_url = f"sqlite:///{workdir / 'state.db'}"
        self.args = list(args)
        self.base = f"http://127.0.0.1:{self.port}"
        self.ingress_path = "/nextup/nextup"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "nextup-dev.out"
        self.pids: dict[int, str] = {}

    def start(self) -> DevStack:
        argv = [sys.executable, "-m", "nextup.cli", "dev", "--port", str(self.port), "--quiet"]
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
                self.stop()
                raise RuntimeError(
                    f"nextup dev not healthy in {START_TIMEOUT:.0f} s:\n{self.log()}"
                )
            time.sleep(0.1)
        self._remember()
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "dev.json").read_text())

    def _remember(self) -> None:
        listed = [pid for pid in self.state()["pids"].values() if pid]
        for pid in listed + [kid for parent in listed for kid in children(parent)]:
            if pid not in self.pids:
                started = start_time(pid)
                if started is not None:
                    self.pids[pid] = started

    def parts(self) -> dict[str, list[int]]:
        """Each part of the stack (nextup-dev, kafka, dispatcher, each function) and the pids
        of its process tree (a function is a gunicorn master and its worker)."""
        trees = {name: [pid, *children(pid)] for name, pid in self.state()["pids"].items() if pid}
        # `nextup dev` is the parent of all the others: it keeps only what is its own.
        others = {pid for name, tree in trees.items() if name != "nextup-dev" for pid in tree}
        if "nextup-dev" in trees:
            trees["nextup-dev"] = [pid for pid in trees["nextup-dev"] if pid not in others]
        return trees

    @property
    def bootstrap(self) -> str:
        return self.state()["kafka"]

    @property
    def topic(self) -> str:
        return self.state()["topics"][0]

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/status", timeout=10) as answer:
            return json.load(answer)

    def drained(self, status: dict[str, Any] | None = None) -> bool:
        """Every Trigger has committed every record on the broker topic: all dispatched."""
        status = status or self.status()
        return all(t["committed"] >= status["records"] for t in status["triggers"].values())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self._remember()
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid, started in self.pids.items():
            kill_if_same(pid, started)
        self.pids.clear()
