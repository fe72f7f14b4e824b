"""The reminder sweep at scale: `REMINDERS` due reminders across `USERS` users, swept by one
send-reminder process to a local SMTP server, on each store backend.

The open tasks and their due reminders are written straight into a fresh store first
(untimed, as `todo.task.created` would have written them), each task mailed to its user's
own address. Then ONE send-reminder function process (functions-framework, the default
settings: `sweep_limit` 500, a 5 s budget per sweep, 16 sends at once) is ticked, one tick
after another, until every reminder has reached the SMTP server and been announced to
the sink (K_SINK, an HTTP server that accepts every event): the clock stops on that
condition, checked after each tick. On DynamoDB (moto) every request of the function
passes through a proxy that counts them by operation; the calls per reminder include the
ticks' own receipts (one read and one write per tick). The SMTP server counts the mails
by Message-ID: each reminder must arrive exactly once.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from bench import describe, fixtures, machine
from bench.storecalls import CountingProxy, create_table, moto_direct
from nextup.store import open_store
from nextup_dev.launcher import FunctionProcess
from nextup_dev.moto import MotoServer, aws_env
from nextup_dev.recorder import HttpRecorder
from nextup_dev.smtp import RecordingSmtp
from nextup_dev.stores import DYNAMODB, SQLITE, STORE_KINDS, store_url

REMINDERS, USERS = 10_000, 1_000
QUICK_REMINDERS, QUICK_USERS = 1_000, 100
# Store calls per reminder before the batched sweep, read from its code: a claim (GetItem,
# then a conditional PutItem), the task (GetItem), the outcome (PutItem) and the
# announcement mark (PutItem), besides a share of the due-index Query.
BEFORE = 5
# Calls per reminder the batched sweep is held to: per page of 100, 4 Queries (one per
# index shard), a claim, a load, an announcement mark, and the records (one per 100
# outcomes, or every `RECORD_EVERY` seconds when sends are slower than that).
GOAL = 0.2


def run(
    quick: bool = False,
    *,
    reminders: int | None = None,
    users: int | None = None,
    kinds: tuple[str, ...] = STORE_KINDS,
) -> dict:
    count = reminders or (QUICK_REMINDERS if quick else REMINDERS)
    spread = users or (QUICK_USERS if quick else USERS)
    info = machine()
    rows = {kind: _sweep(kind, count, spread) for kind in kinds}
    return {"machine": info, "quick": quick, "reminders": count, "users": spread, "rows": rows}


def _ids(count: int, users: int) -> list[tuple[str, str]]:
    return [(f"u{n % users:04d}", f"sweep{n:06d}") for n in range(count)]


def _sweep(kind: str, count: int, users: int) -> dict:
    smtp = RecordingSmtp().start()
    sink = HttpRecorder(respond=lambda _: (202, {}, b"")).start()
    moto = proxy = function = None
    try:
        with TemporaryDirectory(prefix="bench-sweep-") as workdir:
            env = {
                **os.environ,
                "NEXTUP_SMTP_URL": smtp.url,
                "K_SINK": f"{sink.url}/sink",
                "NEXTUP_LOG_LEVEL": "WARNING",
            }
            if kind == SQLITE:
                url = store_url(SQLITE, Path(workdir))
                direct = None
            else:
                moto = MotoServer(atomic=False).start()
                proxy = CountingProxy(moto.url)
                url = f"dynamodb://sweep-{uuid.uuid4().hex[:8]}"
                create_table(moto.url, url.removeprefix("dynamodb://"))
                env.update(aws_env(proxy.url))
                direct = moto.url
            env["NEXTUP_STORE_URL"] = url
            started = time.perf_counter()
            with moto_direct(direct) if direct else contextlib.nullcontext():
                fixtures.init(url)
                fixtures.create_tasks(
                    url,
                    _ids(count, users),
                    due_in=timedelta(minutes=5),  # reminded 15 minutes before: due now
                    email=lambda user: f"{user}@example.com",
                )
            written_s = time.perf_counter() - started
            function = FunctionProcess("send-reminder", env).start()
            before = proxy.snapshot() if proxy else Counter()
            ticks, statuses, elapsed = _tick_until_swept(function.url, url, direct, smtp, count)
            calls = (proxy.snapshot() - before) if proxy else None
    finally:
        if function is not None:
            function.stop()
        if proxy is not None:
            proxy.shutdown()
        if moto is not None:
            moto.stop()
        smtp.stop()
        sink.stop()
    by_id = Counter(message["Message-ID"] for message in smtp.received())
    announced = sum(1 for r in sink.requests if r.headers.get("ce-type") == "todo.reminder.sent")
    row = {
        "written_s": round(written_s, 1),
        "wall_s": round(elapsed, 2),
        "per_second": round(count / elapsed, 1),
        "ticks": ticks,
        "statuses": dict(Counter(str(s) for s in statuses)),
        "mails": sum(by_id.values()),
        "distinct_mails": len(by_id),
        "mailed_twice": sum(1 for n in by_id.values() if n > 1),
        "announced": announced,
    }
    if calls is not None:
        row["calls_per_reminder"] = round(sum(calls.values()) / count, 3)
        row["operations"] = {op: round(n / count, 4) for op, n in sorted(calls.items())}
        row["calls"] = dict(sorted(calls.items()))
    return row


def _tick_until_swept(
    function: str, url: str, direct: str | None, smtp: RecordingSmtp, count: int
) -> tuple[int, list[int], float]:
    """Post ticks one after another until every reminder is mailed and announced (none
    left in the due index); (ticks, their statuses, seconds from the first tick)."""
    statuses: list[int] = []
    most = count // 100 + 50  # a sweep takes up to 500: far more ticks means it is stuck
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        while len(statuses) < most:
            headers = {
                "ce-specversion": "1.0",
                "ce-id": uuid.uuid4().hex,
                "ce-source": "/bench/sweep",
                "ce-type": "dev.knative.sources.ping",
                "content-type": "application/json",
            }
            statuses.append(client.post(function, headers=headers, content=b"{}").status_code)
            if len(smtp.received()) >= count and _swept(url, direct):
                return len(statuses), statuses, time.perf_counter() - started
    raise RuntimeError(f"not swept after {len(statuses)} ticks: {Counter(statuses)}")


def _swept(url: str, direct: str | None) -> bool:
    """Whether the due index is empty: every reminder sent and announced (read straight
    from the store, not through the counting proxy)."""
    with moto_direct(direct) if direct else contextlib.nullcontext(), open_store(url) as store:
        return not store.due_reminders(datetime.now(UTC), limit=1).items


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    out = []
    count = results["reminders"]
    for kind, row in results["rows"].items():
        once = row["distinct_mails"] == row["mails"] == count and row["announced"] >= count
        out.append(
            (
                f"sweep of {count:,} due reminders, {kind}: each mailed once and announced",
                f"{row['distinct_mails']:,} distinct of {row['mails']:,} mails, "
                f"{row['announced']:,} announced, {row['per_second']:,.0f}/s",
                once,
            )
        )
        if "calls_per_reminder" in row:
            out.append(
                (
                    f"sweep, DynamoDB calls per reminder ≤ {GOAL} (was {BEFORE})",
                    f"{row['calls_per_reminder']:g}",
                    row["calls_per_reminder"] <= GOAL,
                )
            )
    return out


def render(results: dict) -> str:
    count, users = results["reminders"], results["users"]
    lines = [
        "## The reminder sweep at scale",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"{describe(results['machine'])}. {count:,} due reminders across {users:,} users"
        f"{' (quick)' if results['quick'] else ''}.",
        "",
        "| store | wall time | reminders/s | ticks | mails (distinct) | announced | "
        "store calls per reminder | by operation |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, row in results["rows"].items():
        if "calls_per_reminder" in row:
            calls = f"{row['calls_per_reminder']:g}"
            ops = ", ".join(f"{op} {n:g}" for op, n in row["operations"].items())
        else:
            calls, ops = "not counted", "in-process SQLite calls: see below"
        lines.append(
            f"| {kind} | {row['wall_s']:,.1f} s | {row['per_second']:,.0f} | {row['ticks']} | "
            f"{row['mails']:,} ({row['distinct_mails']:,}) | {row['announced']:,} | "
            f"{calls} | {ops} |"
        )
    lines += [
        "",
        f"Before the batched sweep each reminder cost {BEFORE} store calls (from its code: "
        "GetItem and a conditional PutItem to claim it, GetItem for its task, PutItem for "
        "the outcome, PutItem once announced) besides its share of the due-index Query. "
        "Now each page of up to 100 due reminders is claimed in one TransactWriteItems, "
        "its tasks read in one BatchGetItem, the outcomes recorded 100 at a time (or every "
        "0.5 s) and the announcement marks 100 at a time; a due page is 4 Queries on "
        "DynamoDB (one per index shard). A transactional write costs DynamoDB 2 write units "
        "per item where a single conditional PutItem costs 1: the batches trade write "
        "units for round trips (a hundredfold fewer).",
        "",
        "SQLite's calls run inside the function process, where no proxy can see them; they "
        "are the same typed-store calls (one SQL statement or `BEGIN IMMEDIATE` "
        "transaction each, one SELECT per due page), and "
        "`tests/functions/test_sweep_scale.py` counts them on both backends. moto runs "
        "with `nextup_dev.moto`'s proportionate transactions (moto itself copies the whole "
        f"table per item of a transaction). {DYNAMODB} on moto is an emulator: its times "
        "are context, not DynamoDB's.",
        "",
    ]
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    return []
