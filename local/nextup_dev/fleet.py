"""The functions as `nextup dev` runs them: each its own functions-framework process on a
free loopback port, with the settings a cluster would give it.

A function that may emit several events per delivery (`"sink" in dependencies`) gets
`K_SINK` = the broker ingress, as a SinkBinding would give it; the others reply with
their one event and the dispatcher publishes it. With scale-to-zero a function is started
by the activator on its first event and stopped after an idle period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from nextup_dev.launcher import function_argv
from nextup_dev.processes import ManagedProcess, http_ready
from nextup_dev.status import Flow


def function_env(
    name: str, *, store_url: str, smtp_url: str, sink_url: str, base: dict[str, str]
) -> dict[str, str]:
    """The environment of function `name`: the caller's, plus the local stack's addresses."""
    from nextup.functions import ALL

    env = {
        **base,
        "NEXTUP_FUNCTION": name,
        "NEXTUP_STORE_URL": store_url,
        "NEXTUP_SMTP_URL": smtp_url,
    }
    env.pop("K_SINK", None)
    env.pop("NEXTUP_SINK", None)
    if "sink" in ALL[name].dependencies:
        env["K_SINK"] = sink_url
    return env


class FunctionInstance:
    """One function's process, and what the activator needs to scale it to zero."""

    def __init__(
        self,
        name: str,
        port: int,
        env: dict[str, str],
        logs: Path,
        report: Callable[[Flow], None],
        *,
        scale_to_zero: bool,
        cwd: Path,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.report = report
        self.in_flight = 0
        self._serving = False  # started and answered its liveness probe
        self.last_used = time.monotonic()
        self.cold_starts = 0
        self.start_times: list[float] = []  # seconds each start took, the last few
        self._lock = asyncio.Lock()

        def news(kind: str, who: str, detail: str) -> None:
            report(Flow("process", detail=f"{who} {kind}: {detail}"))

        self.process = ManagedProcess(
            name,
            function_argv(port),
            log_path=logs / f"{name}.log",
            ready=lambda: http_ready(f"{self.url}/health/liveness"),
            env=env,
            cwd=cwd,
            # Scaled to zero, a function that died is started again by its next event.
            restart=not scale_to_zero,
            report=news,
        )

    @property
    def serving(self) -> bool:
        return self._serving and self.process.running

    async def start(self) -> float:
        seconds = await self.process.start()
        self._serving = True
        self.start_times = [*self.start_times[-9:], seconds]
        return seconds

    async def activate(self) -> None:
        """Make sure the function runs and is ready; a cold start is reported with its time.
        Requests arriving meanwhile wait on the same start, as at Knative's activator."""
        if self.serving:
            return
        async with self._lock:
            if self.serving:
                return
            seconds = await self.start()
            self.cold_starts += 1
            self.last_used = time.monotonic()
            self.report(Flow("cold", detail=f"{self.name} started in {seconds * 1000:.0f} ms"))

    async def scale_down_if_idle(self, idle: float) -> bool:
        if not self.process.running or self.in_flight:
            return False
        if time.monotonic() - self.last_used < idle:
            return False
        async with self._lock:
            if self.in_flight or not self.process.running:
                return False
            self._serving = False
            await self.process.stop()
        self.report(Flow("process", detail=f"{self.name} scaled to zero after {idle:g} s idle"))
        return True

    async def stop(self) -> None:
        self._serving = False
        await self.process.stop()
