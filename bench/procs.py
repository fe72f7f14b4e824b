"""Processes the benchmarks start: servers on loopback ports, optionally pinned to a CPU,
measured (resident memory of the whole process tree) and stopped by their own pids.

A function served by functions-framework is two processes: the gunicorn master (which has
imported the function before forking) and one uvicorn worker. Memory is summed over the
tree: RSS as asked for, and PSS, which splits pages the two share after the fork instead of
counting them twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def server_cpu_split() -> tuple[set[int] | None, int | None]:
    """(CPUs for the server under test, CPU for the load generator and peers): the first
    CPU for the server, the last for the rest; no pinning on a single CPU."""
    available = cpus()
    if len(available) < 2:
        return None, None
    return {available[0]}, available[-1]


def function_argv(source: Path, port: int, target: str = "handle") -> list[str]:
    """How every function is served, ours and the floor alike."""
    return [
        sys.executable,
        "-m",
        "functions_framework",
        "--source",
        str(source),
        "--target",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (by scanning /proc for parent pids)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        kids = parents.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


def _kib(path: Path, name: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def memory_kib(pids: Sequence[int]) -> dict[str, int]:
    """RSS and PSS (KiB) summed over `pids`."""
    return {
        "rss_kib": sum(_kib(Path(f"/proc/{pid}/status"), "VmRSS") for pid in pids),
        "pss_kib": sum(_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss") for pid in pids),
    }


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time (s) used so far by `pids` (those still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def pin(pids: Sequence[int], cpu_set: set[int] | None) -> None:
    if cpu_set is None or not hasattr(os, "sched_setaffinity"):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():  # every thread
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpu_set)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass
class Server:
    """A server process we start and stop; its output goes to a log file."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # pid -> its start time, so a pid the kernel has since reused is never signalled
    pids: dict[int, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        """fork/exec, nothing more: the cold start clock runs around this."""
        handle, path = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        os.close(handle)
        self._remember([self.process.pid])
        return self.process

    def _remember(self, pids: Sequence[int]) -> None:
        for pid in pids:
            started = start_time(pid)
            if started is not None:
                self.pids.setdefault(pid, started)

    def tree(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        pids = [self.process.pid, *children(self.process.pid)]
        self._remember(pids)
        return pids

    def start(self, ready_path: str = "/", timeout: float = START_TIMEOUT) -> Server:
        """Spawn and wait until any HTTP answer comes from `ready_path`."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while not _answers(self.url + ready_path):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{log}")
            time.sleep(0.02)
        self.tree()
        return self

    def memory(self) -> dict[str, int]:
        return memory_kib(self.tree())

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to the process we started (gunicorn stops its worker), then make sure
        every pid we saw in its tree is gone."""
        if self.process is not None:
            self.tree()
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        for pid, started in self.pids.items():
            kill_if_same(pid, started)
        self.pids.clear()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kill_if_same(pid: int, started: str) -> None:
    """SIGKILL `pid` if it is still the process that started at `started` (not a reused pid)."""
    if start_time(pid) == started:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot); None once it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]
