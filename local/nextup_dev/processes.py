"""Child processes of `nextup dev`: started, waited on until ready, restarted after a crash
(as a Kubernetes Deployment would), and stopped in order.

Each child runs in its own process group so that Ctrl-C reaches `nextup dev` alone, which
then stops the children in order (dispatcher before the functions and Kafka) and waits for
each: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

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
