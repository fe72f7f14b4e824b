"""The pipeline: recurring completions through `nextup dev` at rising rates, beside the raw
produce-and-consume rate of the same Kafka broker (the ceiling).

The stack is the real `nextup dev` (Tansu Kafka, the broker ingress, one consumer group
per Trigger, the four functions on an SQLite store). For each step, that many daily
recurring tasks (with reminders) are written into the stack's store first (untimed), then
their `todo.task.completed` events are posted to the ingress by `bench.loadgen` (its own
process) at the step's rate for `duration` seconds (open loop: event n is sent at
start + n/rate). Each completion flows: ingress → topic → complete-task (completes the
task, cancels its reminder, replies `todo.occurrence.requested`) → topic → schedule-next
(creates the next occurrence, schedules its reminder, replies `todo.task.scheduled`) →
topic: three records and two function calls per completion, and twelve consumer groups
reading every record.

End-to-end latency of a completion: from the moment its POST was answered 202 (the
ingress has the record on the topic: *accepted*) to the `time` attribute of the
`todo.task.scheduled` event schedule-next emitted for it, which it stamps right after the
next occurrence and its reminder are stored. Both are read back after the step: the 202
times from the generator, the scheduled events from the broker topic; one clock (this
machine's). Every next occurrence is also looked up in the store. Sustained completions/s
of a step: completions whose next occurrence was stored, over the time from the first
accepted completion to the last stored occurrence (so a backlog that drains after posting
stops counts against it). A step waits until every Trigger has committed every record.

The ceiling: in the same run, before the steps, aiokafka produces records of a completion's
size and headers to a new topic with as many partitions as the broker topic (acks=all, the
ingress's producer settings) while one consumer group reads them: records/s from the first
send to the last record consumed.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from bench import describe, events, fixtures, loadgen, machine, report
from bench.localstack import DevStack
from bench.procs import cpu_seconds

RATES = (50, 100, 200, 400, 800, 1600)
QUICK_RATES = (50, 200)
FULL = {"duration": 10.0, "ceiling": 20_000}
QUICK = {"duration": 3.0, "ceiling": 3_000}
SATURATED = 0.8  # a step whose sustained rate is below this share of the offered rate
LATENCY_RATE = 200  # the rate the latency target is about
LATENCY_TARGET_MS = 100.0
THROUGHPUT_TARGET = 1000.0
STALL = 45.0  # seconds without progress after which a step stops waiting
POSTERS = 64  # connections the poster may use
WARMUP, WARMUP_RATE = 100, 50  # completions posted (and drained) before the first step
SCHEDULED = "todo.task.scheduled"


# The ceiling


async def ceiling(bootstrap: str, partitions: int, count: int) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from nextup_dev.kafka import PRODUCER_SETTINGS, Topic, ensure_topics

    topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, partitions)])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():  # the group join completes after its timeout
            await consumer.getmany(timeout_ms=200)
        value = events.render(events.completed("ceiling-"), 1).split(b"\r\n\r\n", 1)[1]
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"ceiling-0000001"),
            ("ce_source", events.SOURCE.encode()),
            ("ce_type", b"todo.task.completed"),
            ("content-type", b"application/json"),
        ]
        consumed = 0
        started = time.perf_counter()

        async def consume() -> float:
            nonlocal consumed
            while consumed < count:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                consumed += sum(len(records) for records in batches.values())
                if batches:
                    await consumer.commit()
            return time.perf_counter()

        reader = asyncio.create_task(consume())
        sends = [
            await producer.send(topic, value, key=f"u{n % 100:02d}".encode(), headers=headers)
            for n in range(count)
        ]
        await asyncio.gather(*sends)
        produced = time.perf_counter()
        finished = await asyncio.wait_for(reader, 120)
    finally:
        await producer.stop()
        await consumer.stop()
    return {
        "records": count,
        "partitions": partitions,
        "record_bytes": len(value),
        "produce_per_second": round(count / (produced - started), 1),
        "per_second": round(count / (finished - started), 1),
    }


async def _partitions(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata a fresh client lacks
        return len(consumer.partitions_for_topic(topic) or {0})
    finally:
        await consumer.stop()


# Reading the broker topic back


async def _read(bootstrap: str, topic: str, start: dict[int, int]) -> tuple[list, dict[int, int]]:
    """Every record of `topic` from `start` offsets to the current end; the end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata a fresh client lacks
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, start.get(tp.partition, 0))
        records = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                records += batch
        return records, {tp.partition: ends[tp] for tp in parts}
    finally:
        await consumer.stop()


def _scheduled(records: list) -> dict[str, tuple[float, str, str]]:
    """parent task id -> (time stamped by schedule-next, user, next occurrence's id)."""
    found: dict[str, tuple[float, str, str]] = {}
    for record in records:
        headers = dict(record.headers)
        if headers.get("ce_type", b"").decode() != SCHEDULED:
            continue
        stamped = datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00"))
        data = json.loads(record.value)
        parent = data["parent_task_id"]
        at = stamped.timestamp()
        if parent not in found or at < found[parent][0]:
            found[parent] = (at, data["user_id"], data["task_id"])
    return found


# One step


def _post(stack: DevStack, template: str, count: int, rate: float | None, limit_s: float) -> dict:
    spec = {
        "host": "127.0.0.1",
        "port": stack.port,
        "template": template,
        "first": 0,
        "limit": count,
        "duration": limit_s,
        "connections": POSTERS if rate is not None else 32,
        "rate": rate,
        "keep": True,
    }
    return loadgen.in_process(spec)


def _wait(stack: DevStack, before: dict, count: int) -> tuple[dict, bool]:
    """Until every Trigger committed every record and schedule-next has taken `count` more
    occurrence requests; gives up after STALL seconds without progress."""
    trigger = "schedule-next-occurrence-requested"
    goal = before["triggers"][trigger]["delivered"] + count
    last, progress_at = None, time.monotonic()
    while True:
        status = stack.status()
        done = status["triggers"][trigger]["delivered"] >= goal and stack.drained(status)
        if done:
            return status, True
        mark = sum(t["committed"] for t in status["triggers"].values())
        if mark != last:
            last, progress_at = mark, time.monotonic()
        elif time.monotonic() - progress_at > STALL:
            return status, False
        time.sleep(0.5)


def step(stack: DevStack, label: str, rate: float | None, count: int, offsets: dict) -> dict:
    prefix = f"p{label}-"
    fixtures.create_tasks(
        stack.store_url, fixtures.task_ids(prefix, 0, count), due_in=timedelta(days=1)
    )
    template = events.completed(prefix, path=stack.ingress_path)
    parts = stack.parts()
    cpu_before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    before = stack.status()
    posting = _post(stack, template, count, rate, limit_s=max(60.0, 3 * count / (rate or 50)))
    status, drained = _wait(stack, before, count)
    cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in parts.items()}
    records, offsets_after = asyncio.run(_read(stack.bootstrap, stack.topic, offsets))
    offsets.update(offsets_after)
    scheduled = _scheduled(records)
    accepted = {
        f"{prefix}{int(n):07d}": answered
        for n, _, answered, code in posting["records"]
        if 200 <= code < 300
    }
    latencies, stored_at = [], []
    for task, answered in accepted.items():
        if task in scheduled:
            latencies.append(scheduled[task][0] - answered)
            stored_at.append(scheduled[task][0])
    found = _in_store(stack.store_url, [scheduled[t] for t in accepted if t in scheduled])
    first = min(accepted.values()) if accepted else None
    span = (max(stored_at) - first) if stored_at and first is not None else None
    posted = posting["records"]
    post_span = max(r[2] for r in posted) - min(r[1] for r in posted) if posted else None
    counts = {
        kind: sum(t[kind] for t in status["triggers"].values())
        - sum(t[kind] for t in before["triggers"].values())
        for kind in ("retried", "dead_lettered", "dropped")
    }
    return {
        "label": label,
        "offered_per_second": rate,
        "posted": count,
        "accepted": len(accepted),
        "accepted_per_second": round(len(accepted) / post_span, 1) if post_span else None,
        "accept_p50_ms": posting["p50_ms"],
        "accept_p99_ms": posting["p99_ms"],
        "completed": len(latencies),
        "stored": found,
        "drained": drained,
        "per_second": round(len(latencies) / span, 1) if span else None,
        "span_s": round(span, 2) if span else None,
        "p50_ms": _ms(report.percentile(latencies, 0.5)),
        "p90_ms": _ms(report.percentile(latencies, 0.9)),
        "p99_ms": _ms(report.percentile(latencies, 0.99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        **counts,
        # CPU time each part of the stack spent on the step, per completion stored (ms)
        "cpu_ms_per_completion": {
            name: round(seconds * 1000 / max(1, len(latencies)), 2) for name, seconds in cpu.items()
        },
        "poster_cpu_s": posting["cpu_s"],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _in_store(url: str, scheduled: list[tuple[float, str, str]]) -> int:
    from nextup.store import open_store

    with open_store(url) as store:
        return sum(store.get_task(user, task) is not None for _, user, task in scheduled)


def run(
    quick: bool = False,
    rates: tuple[int, ...] | None = None,
    settings: dict | None = None,
    warmup: int = WARMUP,
) -> dict:
    settings = settings or (QUICK if quick else FULL)
    duration = settings["duration"]
    info = machine()
    steps: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as workdir:
        stack = DevStack(Path(workdir)).start()
        try:
            partitions = asyncio.run(_partitions(stack.bootstrap, stack.topic))
            kafka = asyncio.run(ceiling(stack.bootstrap, partitions, settings["ceiling"]))
            _, offsets = asyncio.run(_read(stack.bootstrap, stack.topic, {}))
            # Untimed: first-use imports and connections in every process, not in a step.
            step(stack, "warmup", WARMUP_RATE, warmup, offsets)
            for rate in rates or (QUICK_RATES if quick else RATES):
                steps.append(step(stack, str(rate), rate, math.ceil(rate * duration), offsets))
                sustained = steps[-1]["per_second"] or 0.0
                if rate >= LATENCY_RATE and sustained < SATURATED * rate:
                    break  # saturated: higher offered rates only grow the backlog
            best = max((s["per_second"] or 0.0) for s in steps)
            count = int(min(20_000, max(settings.get("max_least", 200), best * duration)))
            steps.append(step(stack, "max", None, count, offsets))
        finally:
            stack.stop()
    return {
        "machine": info,
        "quick": quick,
        "duration_s": duration,
        "partitions": partitions,
        "ceiling": kafka,
        "steps": steps,
    }


def _best(steps: list[dict]) -> float:
    return max((s["per_second"] or 0.0) for s in steps)


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    steps = results["steps"]
    best = _best(steps)
    at_rate = next((s for s in steps if s["offered_per_second"] == LATENCY_RATE), None)
    p99 = at_rate["p99_ms"] if at_rate else None
    return [
        (
            f"pipeline ≥ {THROUGHPUT_TARGET:,.0f} completions/s sustained",
            f"{best:,.1f}/s (Kafka ceiling {results['ceiling']['per_second']:,.0f} records/s)",
            best >= THROUGHPUT_TARGET,
        ),
        (
            f"pipeline p99 ≤ {LATENCY_TARGET_MS:.0f} ms at {LATENCY_RATE}/s",
            "-" if p99 is None else f"{p99:,.0f} ms",
            None if p99 is None else p99 <= LATENCY_TARGET_MS,
        ),
    ]


def render(results: dict) -> str:
    steps = results["steps"]
    best = _best(steps)
    at_rate = next((s for s in steps if s["offered_per_second"] == LATENCY_RATE), None)
    p99 = at_rate["p99_ms"] if at_rate else None
    kafka = results["ceiling"]
    lines = [
        "## pipeline: recurring completions through `nextup dev`",
        "",
        f"Machine: {describe(results['machine'])}{' (quick run)' if results.get('quick') else ''}.",
        "",
        "The whole local stack (`nextup dev`: Tansu Kafka, the broker ingress, twelve "
        "Triggers each its own consumer group, the four functions, SQLite store) on this "
        f"machine. Each step posts `todo.task.completed` of distinct daily tasks (written "
        f"into the store beforehand, with reminders) to the ingress at the step's rate for "
        f"{results['duration_s']:.0f} s (open loop, `bench/loadgen.py` in its own "
        "process); *max* posts a fixed batch as fast as the ingress takes it. Every "
        "completion makes complete-task reply `todo.occurrence.requested` and schedule-next "
        "create the next occurrence and reply `todo.task.scheduled`: three records and two "
        "function calls per completion. End-to-end latency: from the 202 of the completion's "
        "POST (the record is on the topic) to the `time` schedule-next stamps on "
        "`todo.task.scheduled` right after storing the next occurrence and its reminder, "
        "read back from the topic after the step; every next occurrence is also looked up "
        "in the store (*stored*). *Sustained* is completions stored over the time from the "
        "first accepted completion to the last occurrence stored, so a backlog that drains "
        "after posting stops counts against it. The ladder stops after the first step at "
        f"or above {LATENCY_RATE}/s that sustains less than {SATURATED:.0%} of its rate.",
        "",
        f"Ceiling, same broker, same run: aiokafka produced {kafka['records']:,} records of "
        f"{kafka['record_bytes']} bytes (a completion's value and headers; acks=all, "
        f"linger 2 ms, {kafka['partitions']} partitions) while one consumer group read "
        f"them: **{kafka['per_second']:,.0f} records/s** produced and consumed "
        f"({kafka['produce_per_second']:,.0f} records/s produced). One completion is three "
        "records, each read by twelve consumer groups.",
        "",
        f"Targets: at least {THROUGHPUT_TARGET:,.0f} completions/s sustained "
        f"(best here {best:,.1f}/s: {report.verdict(best >= THROUGHPUT_TARGET)}); p99 at most "
        f"{LATENCY_TARGET_MS:.0f} ms at {LATENCY_RATE}/s (here "
        f"{'-' if p99 is None else f'{p99:,.0f} ms'}: "
        f"{report.verdict(None if p99 is None else p99 <= LATENCY_TARGET_MS)}).",
        "",
        "Reproduce: `python -m bench pipeline` (`--quick`: 3 s steps at 50 and 200/s).",
        "",
    ]
    cells = []
    for s in steps:
        offered = "max" if s["offered_per_second"] is None else f"{s['offered_per_second']:,}/s"
        cells.append(
            [
                offered,
                f"{s['posted']:,}",
                "-" if s["accepted_per_second"] is None else f"{s['accepted_per_second']:,.0f}/s",
                f"{s['stored']:,}" + ("" if s["drained"] else " (gave up waiting)"),
                "-" if s["per_second"] is None else f"{s['per_second']:,.1f}/s",
                _cell(s["p50_ms"]),
                _cell(s["p99_ms"]),
                _cell(s["max_ms"]),
                f"{_cell(s['accept_p50_ms'])} / {_cell(s['accept_p99_ms'])}",
                # `dead` in results recorded before the count was named `dead_lettered`.
                f"{s['retried']}/{s.get('dead_lettered', s.get('dead'))}/{s['dropped']}",
            ]
        )
    lines += report.table(
        [
            "offered",
            "completions posted",
            "accepted",
            "next occurrences stored",
            "sustained",
            "e2e p50",
            "e2e p99",
            "e2e max",
            "202 p50 / p99",
            "retried/dead/dropped",
        ],
        cells,
    )
    lines += ["", *_cpu_table(steps)]
    if results.get("figure"):
        lines += ["", f"![pipeline]({results['figure']})"]
    lines.append("")
    return "\n".join(lines)


def _cpu_table(steps: list[dict]) -> list[str]:
    """Where the CPU went: each part's CPU time per completion stored, per step."""
    names = list(dict.fromkeys(n for s in steps for n in s.get("cpu_ms_per_completion", {})))
    if not names:
        return []
    rows = []
    for s in steps:
        cpu = s["cpu_ms_per_completion"]
        offered = "max" if s["offered_per_second"] is None else f"{s['offered_per_second']:,}/s"
        rows.append([offered, *(f"{cpu.get(n, 0):.1f}" for n in names), f"{sum(cpu.values()):.1f}"])
    return [
        "CPU time per completion stored, by part of the stack (ms; from /proc, the whole "
        "step including the drain; `nextup-dev` holds the ingress, `kafka` is Tansu, each "
        "function is its gunicorn master and worker). Two cores give at most 2,000 ms of "
        "CPU per second, so 1,000 completions/s leaves 2 ms per completion for all of it.",
        "",
        *report.table(["offered", *names, "total"], rows),
    ]


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.1f} s" if value >= 10_000 else f"{value:,.0f} ms"


def files(results: dict, docs: Path) -> list[Path]:
    plt = report.pyplot()
    if plt is None:
        return []
    steps = [s for s in results["steps"] if s["offered_per_second"] is not None]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    offered = [s["offered_per_second"] for s in steps]
    left.plot(offered, [s["per_second"] or 0 for s in steps], marker="o", label="sustained")
    left.plot(offered, offered, linestyle=":", color="grey", label="offered")
    left.axhline(THROUGHPUT_TARGET, color="tab:red", linewidth=0.8, label="target 1,000/s")
    left.axhline(
        results["ceiling"]["per_second"] / 3,
        color="tab:green",
        linestyle="--",
        linewidth=0.8,
        label="Kafka ceiling / 3 records",
    )
    maximum = next((s for s in results["steps"] if s["offered_per_second"] is None), None)
    if maximum and maximum["per_second"]:
        left.axhline(
            maximum["per_second"], color="tab:blue", linestyle="--", linewidth=0.8, label="max step"
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered completions/s")
    left.set_ylabel("completions/s sustained")
    left.set_title("Pipeline throughput")
    left.legend(fontsize=7)
    right.plot(offered, [s["p50_ms"] or 0 for s in steps], marker="o", label="p50")
    right.plot(offered, [s["p99_ms"] or 0 for s in steps], marker="x", label="p99")
    right.axhline(LATENCY_TARGET_MS, color="tab:red", linewidth=0.8, label="target p99 at 200/s")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered completions/s")
    right.set_ylabel("end-to-end latency (ms)")
    right.set_title("Accepted → next occurrence stored")
    right.legend(fontsize=7)
    figure.tight_layout()
    path = docs / "benchmarks-pipeline.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    results["figure"] = path.name
    return [path]
