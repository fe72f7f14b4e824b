"""`nextup dev` as a test peer (`nextup_dev.child`): the real command in its own process,
on free ports, with its state (store, mail, dead letters, logs) under a temporary directory.

Waiting is on conditions (`/healthz`, `/status`, files, the store) with deadlines; a stack
that does not come up fails the test. `stop()` sends SIGINT, as Ctrl-C does, and checks
that every process it started is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness import ROOT, wait_until
from nextup_dev.child import DevChild


def wait_for(predicate, timeout: float, message: str, every: float = 0.25):
    """`wait_until` at a gentler pace, for conditions that cost the stack under test CPU to
    answer (a /status request, listing tasks): the load test shares two cores."""
    return wait_until(predicate, timeout, message, every)


def daily(user: str, task: str, **extra) -> dict:
    """The data of a daily recurring task (09:00 Berlin from Monday 2026-11-23)."""
    return {
        "user_id": user,
        "task_id": task,
        "title": f"Water plant {task}",
        "due_at": "2026-11-23T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=DAILY"},
        **extra,
    }


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


def trigger(name: str, event_type: str, uri: str, *, ordered: bool = False, **delivery) -> dict:
    """A Trigger of the broker `local` in namespace `dev`, filtering on the event type."""
    doc = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "dev"},
        "spec": {
            "broker": "local",
            "filter": {"attributes": {"type": event_type}},
            "subscriber": {"uri": uri},
        },
    }
    if delivery:
        doc["spec"]["delivery"] = delivery
    if ordered:
        doc["metadata"]["annotations"] = {"kafka.eventing.knative.dev/delivery.order": "ordered"}
    return doc


def manifests(workdir: Path, *triggers: dict) -> Path:
    """An `eventing/` directory with the broker `local` (namespace `dev`) and `triggers`:
    events for it are posted to the ingress at `/dev/local`."""
    directory = workdir / "eventing"
    directory.mkdir()
    broker = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "local", "namespace": "dev"},
    }
    (directory / "eventing.yaml").write_text(yaml.safe_dump_all([broker, *triggers]))
    return directory


class DevStack(DevChild):
    """`nextup_dev.child.DevChild` with what tests ask of it: posting events, waiting for
    the dispatch to drain, the dead letters and mail it wrote, and a stop that checks
    every process it started is gone."""

    def __init__(self, workdir: Path, *args: str, eventing: Path | None = None) -> None:
        if eventing is not None:
            args = (*args, "--eventing", str(eventing))
        super().__init__(workdir, *args)
        self.pids: set[int] = set()

    def start(self) -> DevStack:
        super().start()
        self.remember_pids()
        return self

    def remember_pids(self) -> None:
        state = self.state()
        self.pids |= {pid for pid in state["pids"].values() if pid}

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
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.remember_pids()
        try:
            code = super().stop()
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None
        if check and code is not None:
            assert code == 0, f"nextup dev exited with {code}:\n{self.log()}"
            left = [pid for pid in self.pids if alive(pid)]
            assert not left, f"processes left behind: {left}"


__all__ = ["ROOT", "DevStack", "alive", "daily", "manifests", "trigger", "wait_for", "wait_until"]
