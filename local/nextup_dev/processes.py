"""Child processes, supervised: the one place that starts, waits on and stops them.

- `ManagedProcess` (asyncio): the children of `nextup dev`, started, waited on until
  ready, restarted after a crash (as a Kubernetes Deployment would), and stopped in order.
  Each runs in its own process group so that Ctrl-C reaches `nextup dev` alone, which then
  stops the children in order (dispatcher before the functions and Kafka) and waits for
  each: nothing is left behind.
- `Supervised` (blocking): a peer a test or benchmark starts (moto server, a function
  under functions-framework, `nextup dev` itself): output to a log file, ready when its
  probe says so, stopped by a signal and killed if it does not go in time.
- `wait_until`: waiting on a condition with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

Ready = Callable[[], Awaitable[bool]]
Report = Callable[[str, str, str], None]  # (kind, name, detail)
MAX_RESTART_DELAY = 5.0
STABLE_AFTER = 10.0  # a child that ran this long gets a fresh restart delay


class ChildFailed(RuntimeError):
    """A child exited or never became ready."""


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Ready | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        restart: bool = True,
        report: Report | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self._ready = ready
        self._on_line = on_line
        self._restart = restart
        self._report = report or (lambda kind, name, detail: None)
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self.started_at = 0.0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> float:
        """Spawn the child and wait until it is ready; the seconds that took."""
        self._stopping = False
        began = time.monotonic()
        await self._spawn()
        await self._wait_ready(began)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.name}")
        return time.monotonic() - began

    async def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *_orphan_guard(self.argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if self._on_line else log,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                process_group=0,
            )
        finally:
            log.close()  # the child holds its own descriptor
        self.started_at = time.monotonic()
        if self._on_line is not None:
            self._reader = asyncio.create_task(
                self._read_lines(self.process), name=f"read-{self.name}"
            )

    async def _read_lines(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and self._on_line is not None
        while line := await process.stdout.readline():
            self._on_line(line.decode(errors="replace").rstrip("\n"))

    async def _wait_ready(self, began: float) -> None:
        assert self.process is not None
        while True:
            if self.process.returncode is not None:
                raise ChildFailed(
                    f"{self.name} exited with {self.process.returncode} while starting; "
                    f"see {self.log_path}:\n{self.tail()}"
                )
            if self._ready is None or await self._ready():
                return
            if time.monotonic() - began > self.start_timeout:
                await self._terminate()
                raise ChildFailed(
                    f"{self.name} was not ready within {self.start_timeout:.0f} s; "
                    f"see {self.log_path}:\n{self.tail()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), 0.05)

    async def _watch(self) -> None:
        delay = 0.2
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            _kill_group(self.process.pid)  # e.g. gunicorn's worker, orphaned by a SIGKILL
            if self._stopping:
                return
            if not self._restart:
                self._report("exited", self.name, f"exit code {code}")
                return
            if time.monotonic() - self.started_at > STABLE_AFTER:
                delay = 0.2
            self._report("crashed", self.name, f"exit code {code}; restarting in {delay:.1f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)
            if self._stopping:
                return
            try:
                began = time.monotonic()
                await self._spawn()
                await self._wait_ready(began)
            except ChildFailed as exc:
                self._report("crashed", self.name, str(exc).splitlines()[0])
                continue
            self.restarts += 1
            self._report("restarted", self.name, f"pid {self.pid}")

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns once the child is gone."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._terminate(grace)

    async def _terminate(self, grace: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            await self._drain()
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
        _kill_group(process.pid)
        await self._drain()

    async def _drain(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 2.0)

    def tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def _kill_group(pid: int) -> None:
    """SIGKILL whatever is left of a child's process group (it leads its own group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _orphan_guard(argv: list[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM if `nextup dev` dies without stopping it (even by
    SIGKILL): util-linux's setpriv sets the parent-death signal, which survives exec."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


async def http_ready(url: str) -> bool:
    """True once `url` answers 200 (a liveness endpoint)."""
    import httpx

    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return response.status_code == 200


async def tcp_ready(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    message: str = "condition",
    every: float = 0.02,
) -> Any:
    """Poll `predicate` every `every` seconds until it returns something truthy (returned);
    AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        pause.wait(every)


def http_answers(url: str, *, ok_only: bool = False, timeout: float = 1.0) -> bool:
    """True once `url` gives any HTTP answer (with `ok_only`: a 2xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return not ok_only
    except OSError:
        return False


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True once something accepts connections on (host, port)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ExitedEarly(ChildFailed):
    """The child exited before it was ready (e.g. someone else took its port)."""


class Supervised:
    """A process a test or benchmark starts and stops itself, blocking.

    Its output (stdout and stderr) goes to `log_path`, a temporary file by default: a pipe
    nobody reads fills up and stalls the child. `start` spawns it and returns once
    `ready()` is true (subclasses or the `ready` argument say what ready is); it raises
    `ExitedEarly` if the child exits first and `ChildFailed` if it is not ready in
    `start_timeout` seconds. `stop` sends `stop_signal`, kills after `stop_timeout`
    seconds, and returns the exit code (None if it was not running); `killed` says
    whether it had to be killed.
    """

    stop_signal = signal.SIGTERM
    keep_log = True  # False: the log file goes with `stop`

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        log_path: Path | None = None,
        ready: Callable[[], bool] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._ready = ready
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False
        if log_path is None:
            handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(handle)
            log_path = Path(path)
        self.log_path = log_path

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        return self._ready() if self._ready is not None else True

    def spawn(self) -> subprocess.Popen[bytes]:
        """fork/exec, nothing more (a cold start's clock runs around this)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.killed = False
        return self.process

    def start(self, timeout: float | None = None) -> Any:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        assert self.process is not None
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise ExitedEarly(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise ChildFailed(f"{self.name} was not ready within {timeout:.0f} s:\n{log}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)  # a short pause that also notices an early exit

    def log(self, limit: int = 6000) -> str:
        """The end of its output."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def log_lines(self) -> list[dict]:
        """Its JSON log lines (nextup's structured logs), parsed."""
        import json

        lines = []
        for line in self.log(limit=1 << 30).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    def stop(self, timeout: float | None = None) -> int | None:
        process = self.process
        code = None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self.stop_signal)
            try:
                code = process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
                self.killed = True
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)
        return code

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
