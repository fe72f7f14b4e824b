"""The function set for the reliability tests: real functions-framework processes (or the
same functions in-process: `in_process`) over a real store (SQLite file or DynamoDB on
moto server), a real SMTP server and a recording HTTP sink, each optionally behind a
fault proxy.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from storedump import dump

from harness import FunctionGroup, FunctionProcess, HttpRecorder, MailServer, cloud_event
from nextup_dev.moto import aws_env
from nextup_dev.stores import SQLITE, STORE_KINDS
from nextup_dev.stores import store_url as store_url_for


def chores_created(run: str, tasks: list[tuple[str, str]], due: datetime) -> list:
    """`todo.task.created` for each (user, task): a daily chore due at `due` whose reminder
    (a day before) is due already, and so is its next occurrence's, mailed to its user."""
    return [
        cloud_event(
            "todo.task.created",
            {
                "user_id": user,
                "task_id": task,
                "title": f"Chore {i}",
                "due_at": due.isoformat(),
                "recurrence": {"rule": "FREQ=DAILY"},
                "reminder": {"before": "P1D"},
                "notify": {"email": f"{user}@example.com"},
            },
            id_=f"{run}-c{i}",
        )
        for i, (user, task) in enumerate(tasks)
    ]


def together(calls: Iterable[Callable[[], object]]) -> None:
    """Run the calls at once, a thread each; the first failure is raised once all ended."""
    failures: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def start_together(processes: Iterable[FunctionProcess]) -> None:
    """Start the processes at once; if one does not start, stop them all and raise."""
    processes = list(processes)
    try:
        together(process.start for process in processes)
    except BaseException:
        stop_together(processes)
        raise


def stop_together(processes: Iterable[FunctionProcess]) -> None:
    """Stop the processes at once (each takes a while to wind down)."""
    together(process.stop for process in processes)


class FunctionSet(FunctionGroup):
    """The group with the HTTP recorder as the sink of send-reminder's events."""

    @property
    def sink(self) -> HttpRecorder:
        return self.web

    @classmethod
    def start(
        cls,
        kind: str,
        tmp: Path,
        mp: pytest.MonkeyPatch,
        *,
        moto: str | None = None,
        names: tuple[str, ...] = ("complete-task", "schedule-next", "send-reminder"),
        env: dict[str, str] | None = None,
        per_function: dict[str, dict[str, str]] | None = None,
        store_endpoint: str | None = None,
        smtp_url: str | None = None,
        sink_url: str | None = None,
        mail: MailServer | None = None,
        sink: HttpRecorder | None = None,
        at_once: bool = False,
        in_process: bool = False,
    ) -> FunctionSet:
        """Start it; `store_endpoint`, `smtp_url` and `sink_url` put a proxy in between.
        With `at_once` the functions start in parallel (see `stop_at_once`); with
        `in_process` they run in this process (`inprocess`, the fast layer)."""
        store_url = store_url_for(kind, tmp, prefix="rel")
        mail = mail or MailServer().start()
        sink = sink or HttpRecorder().start()
        base = {
            "NEXTUP_STORE_URL": store_url,
            "NEXTUP_SMTP_URL": smtp_url or mail.url,
            "NEXTUP_RETRY_BUDGET": "2",
            "NEXTUP_BREAKER_RECOVERY": "1",
            "NEXTUP_REMINDER_LEASE": "PT5S",
            **(env or {}),
        }
        if kind != SQLITE:
            assert moto, "a moto server endpoint is needed for DynamoDB"
            for name, value in aws_env(moto).items():
                mp.setenv(name, value)  # the test process reads the real endpoint
            base.update(aws_env(store_endpoint or moto))

        def env_for(name: str) -> dict[str, str]:
            function_env = dict(base)
            if name == "send-reminder":
                function_env["K_SINK"] = sink_url or f"{sink.url}/sink"
            function_env.update((per_function or {}).get(name, {}))
            return function_env

        stack = cls(store_url, base, mail, sink, in_process=in_process)
        if not at_once or in_process:
            stack.launch(names, env_for)
            return stack
        stack.launch((), env_for)  # the store, initialised
        processes = {name: stack.function(name, env_for(name)) for name in names}
        try:
            start_together(processes.values())
        except BaseException:
            stack.stop()
            raise
        stack.functions.update(processes)
        return stack

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, kind: str, tmp: Path, *, http: dict[str, Any] | None = None, **options: Any
    ) -> Iterator[FunctionSet]:
        """`start(kind, tmp, **options)` for a `with` block (a fixture's), with `kind` set
        and `http`: one client for the module (a new one per request costs more than the
        request), with the `http` options; everything stopped at the end (at once with
        `at_once`)."""
        with pytest.MonkeyPatch.context() as mp:
            stack = cls.start(kind, tmp, mp, **options)
            stack.kind = kind
            try:
                with stack.client(**{"timeout": 60, **(http or {})}) as client:
                    stack.http = client
                    yield stack
            finally:
                stack.stop(at_once=options.get("at_once", False))

    @classmethod
    def fixture(
        cls, name: str, workdir: str, kinds: tuple[str, ...] = STORE_KINDS, **options: Any
    ) -> Any:
        """A module-scoped pytest fixture `name`: the set `running(kind, ...)` over each of
        `kinds` (a fresh `workdir` each), with the moto server when DynamoDB is among them."""

        @pytest.fixture(name=name, scope="module", params=kinds)
        def running_set(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Any]:
            moto = None if request.param == SQLITE else request.getfixturevalue("moto_server")
            tmp = tmp_path_factory.mktemp(workdir)
            with cls.running(request.param, tmp, moto=moto, **options) as stack:
                yield stack

        return running_set

    def stop_at_once(self) -> None:
        """`stop`, with the functions and the sink's server stopped in parallel."""
        self.stop(at_once=True)

    def dump(self) -> list[tuple]:
        return dump(self.store_url)

    def mail_by_task(self) -> Counter:
        return Counter(m["X-Nextup-Task"] for m in self.mail.received())

    def message_ids(self) -> Counter:
        return Counter(m["Message-ID"] for m in self.mail.received())

    def sink_events(self) -> list[dict]:
        return [
            {"id": r.headers.get("ce-id"), "type": r.headers.get("ce-type"), "data": r.json()}
            for r in self.sink.requests
            if r.method == "POST"
        ]
