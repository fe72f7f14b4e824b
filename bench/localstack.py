"""`nextup dev` for a benchmark: the real command in its own process, on free ports, its
state (SQLite store, logs, mail) under a temporary directory.

`stop()` sends SIGINT, as Ctrl-C does, waits for it to exit, then kills by pid any process
it had listed in `dev.json` that is somehow still running (the same process: checked by
its start time).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.procs import children, kill_if_same, start_time
from nextup_dev.child import INGRESS_PATH, DevChild

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class DevStack(DevChild):
    """`nextup_dev.child.DevChild` that knows its process trees (to measure their CPU) and
    makes sure none of them outlives the benchmark."""

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(workdir, "--quiet", *args, start_timeout=START_TIMEOUT)
        self.pids: dict[int, str] = {}  # pid -> its start time, to kill only that process
        self.ingress_path = INGRESS_PATH

    def start(self) -> DevStack:
        super().start()
        self._remember()
        return self

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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self._remember()
        with contextlib.suppress(TimeoutError):  # killed; what it left is reaped below
            super().stop(STOP_TIMEOUT)
        for pid, started in self.pids.items():
            kill_if_same(pid, started)
        self.pids.clear()
