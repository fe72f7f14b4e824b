"""Processes the benchmarks start: servers on loopback ports, optionally pinned to a CPU,
measured (resident memory of the whole process tree) and stopped by their own pids.

A function served by functions-framework is two processes: the gunicorn master (which has
imported the function before forking) and one uvicorn worker. Memory is summed over the
tree: RSS as asked for, and PSS, which splits pages the two share after the fork instead of
counting them twice.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from nextup_dev.launcher import function_argv
from nextup_dev.ports import free_port
from nextup_dev.processes import Supervised, http_answers, tcp_open

__all__ = ["ROOT", "Server", "free_port", "function_argv", "pin", "server_cpu_split"]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def precompile() -> None:
    """Byte-compile the project's sources, as the function image has them (`pip install .`
    compiles what it installs). An editable install does not, and with
    PYTHONDONTWRITEBYTECODE (set on these machines) every process would compile nextup's
    modules again on each start: a cost no deployed function pays, and the floor, one small
    file, does not either."""
    for tree in ("functions", "local", "bench"):
        compileall.compile_dir(ROOT / tree, quiet=1, workers=1)


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


class Server(Supervised):
    """A server process we start and stop (`nextup_dev.processes.Supervised`), that also
    knows its process tree: to measure it, to pin it, and to leave none of it behind."""

    keep_log = False

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        super().__init__(
            name, argv, env=env, cwd=cwd, start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT
        )
        self.port = port
        self.ready_path: str | None = "/"
        # pid -> its start time, so a pid the kernel has since reused is never signalled
        self.pids: dict[int, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self):
        process = super().spawn()
        self._remember([process.pid])
        return process

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

    def ready(self) -> bool:
        if self.ready_path is None:
            return tcp_open("127.0.0.1", self.port)
        return http_answers(self.url + self.ready_path, timeout=2.0)

    def start(self, ready_path: str | None = "/", timeout: float = START_TIMEOUT) -> Server:
        """Spawn and wait until any HTTP answer comes from `ready_path` (None: until it
        accepts connections)."""
        self.ready_path = ready_path
        super().start(timeout)
        self.tree()
        return self

    def memory(self) -> dict[str, int]:
        return memory_kib(self.tree())

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM to the process we started (gunicorn stops its worker), then make sure
        every pid we saw in its tree is gone."""
        self.tree()
        code = super().stop(timeout)
        for pid, started in self.pids.items():
            kill_if_same(pid, started)
        self.pids.clear()
        return code


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
