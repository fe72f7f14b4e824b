"""Cold start: process start to the first event answered 2xx, each function against the floor.

What is timed, per run: from just before `subprocess.Popen` (fork/exec of
``python -m functions_framework --source ... --target handle``) until the last byte of the
answer to one CloudEvent has been read. The client connects to the port every 2 ms until
something listens (gunicorn binds after importing the function; a connection made before
the worker accepts waits in the listen backlog), then sends the event in binary mode on
that connection. Only a 2xx counts; anything else fails the benchmark.

The store is initialised and every event's fixture written before the clock starts:

- complete-task: `todo.task.completed` of a daily recurring task (with a pending
  reminder), so it completes it, cancels the reminder and replies
  `todo.occurrence.requested`;
- schedule-next: `todo.task.created` of a new daily task with a reminder;
- send-reminder: `todo.reminder.due` for one task whose reminder is due: it claims it,
  mails it over SMTP (a local aiosmtpd sink) and replies `todo.reminder.sent`;
- health: `todo.health.probe`: it probes the store and replies `todo.health.reported`.

The floor (`bench.baselines.floor`) gets the same request. Runs alternate floor/function,
the order swapped every run, so both see the same machine; the ratio is median/median of
the runs interleaved with that function. Memory: RSS and PSS summed over the process tree
(gunicorn master + uvicorn worker) right after the first answer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from bench import describe, events, fixtures, machine, peers, report
from bench.baselines import FLOOR
from bench.procs import ROOT, Server, free_port, function_argv
from nextup_dev.stores import DYNAMODB, SQLITE

FUNCTIONS = ("complete-task", "schedule-next", "send-reminder", "health")
TARGETS = {SQLITE: 1.3, DYNAMODB: 1.6}  # one per store kind (STORE_KINDS)
MEMORY_TARGET = 1.5
RUNS, QUICK_RUNS = 10, 2
POLL = 0.002
TIMEOUT = 60.0

# Task ids start with these, so no two series share a task.
PREFIXES = {"complete-task": "ct", "schedule-next": "sn", "send-reminder": "sr", "health": "hp"}
EVENTS: dict[str, tuple[str, Callable[..., str]]] = {
    "complete-task": ("todo.task.completed", events.completed),
    "schedule-next": ("todo.task.created", events.created),
    "send-reminder": ("todo.reminder.due", events.reminder_due),
    "health": ("todo.health.probe", events.health_probe),
}


def first_answer(server: Server, request: bytes) -> dict:
    """Spawn `server`, send `request` as soon as it listens; the clock is fork/exec to the
    last byte of the answer."""
    started = time.perf_counter()
    process = server.spawn()
    deadline = started + TIMEOUT
    while True:
        sock = socket.socket()
        try:
            sock.connect(("127.0.0.1", server.port))
            break
        except ConnectionRefusedError:
            sock.close()
            if process.poll() is not None:
                raise RuntimeError(f"{server.name} exited early:\n{server.log()}") from None
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{server.name} did not listen:\n{server.log()}") from None
            time.sleep(POLL)
    listening = time.perf_counter()
    with sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(request)
        answer = bytearray()
        while chunk := sock.recv(65536):  # the request says `connection: close`
            answer += chunk
    answered = time.perf_counter()
    status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0
    if not 200 <= status < 300:
        raise RuntimeError(f"{server.name} answered {bytes(answer[:600])!r}\n{server.log()}")
    return {
        "seconds": answered - started,
        "listening_s": listening - started,
        "status": status,
        **server.memory(),
    }


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for a while (boto3 reads its settings there)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _prepare(function: str, store_url: str, prefix: str, number: int) -> None:
    """The untimed fixture the function's event needs."""
    if function == "complete-task":
        ids = fixtures.task_ids(prefix, number, 1)
        fixtures.create_tasks(store_url, ids, due_in=timedelta(days=1))
    elif function == "send-reminder":
        ids = fixtures.task_ids(prefix, number, 1)
        fixtures.create_tasks(store_url, ids, due_in=timedelta(minutes=-1))


def _series(function: str, store: str, env: dict[str, str], runs: int) -> dict:
    type_, build = EVENTS[function]
    prefix = f"{store[0]}{PREFIXES[function]}"
    template = build(prefix, close=True)
    ours: list[dict] = []
    floor: list[dict] = []
    for run in range(runs):
        _prepare(function, env["NEXTUP_STORE_URL"], prefix, run)
        request = events.render(template, run)
        pair = [
            ("floor", FLOOR, floor),
            (function, ROOT / "functions" / function / "main.py", ours),
        ]
        for name, source, samples in pair if run % 2 == 0 else pair[::-1]:
            port = free_port()
            server = Server(name, function_argv(port, source), port, env=env)
            try:
                samples.append(first_answer(server, request))
            finally:
                server.stop()
    return {
        "store": store,
        "function": function,
        "event": type_,
        "ours": ours,
        "floor": floor,
        **_summary(ours, floor),
    }


def _summary(ours: list[dict], floor: list[dict]) -> dict:
    def med(samples: list[dict], key: str) -> float:
        return report.median([sample[key] for sample in samples])

    summary = {
        "median_s": round(med(ours, "seconds"), 4),
        "floor_median_s": round(med(floor, "seconds"), 4),
        "listening_s": round(med(ours, "listening_s"), 4),
        "floor_listening_s": round(med(floor, "listening_s"), 4),
        "rss_kib": med(ours, "rss_kib"),
        "floor_rss_kib": med(floor, "rss_kib"),
        "pss_kib": med(ours, "pss_kib"),
        "floor_pss_kib": med(floor, "pss_kib"),
    }
    summary["ratio"] = report.ratio(summary["median_s"], summary["floor_median_s"])
    summary["rss_ratio"] = report.ratio(summary["rss_kib"], summary["floor_rss_kib"])
    summary["pss_ratio"] = report.ratio(summary["pss_kib"], summary["floor_pss_kib"])
    return summary


def run(
    quick: bool = False,
    functions: tuple[str, ...] = FUNCTIONS,
    stores: tuple[str, ...] = peers.STORE_KINDS,
    runs: int | None = None,
) -> dict:
    runs = runs or (QUICK_RUNS if quick else RUNS)
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as workdir:
        smtp = peers.smtp()
        try:
            with peers.stores(stores, Path(workdir), "bench-cold") as settings:
                for store in stores:
                    env = settings[store]
                    with environ(env):
                        fixtures.init(env["NEXTUP_STORE_URL"])
                        for function in functions:
                            extra = {"NEXTUP_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}"}
                            function_env = {**env, **(extra if function == "send-reminder" else {})}
                            rows.append(_series(function, store, function_env, runs))
        finally:
            smtp.stop()
    return {"machine": info, "quick": quick, "runs": runs, "rows": rows}


def _met(row: dict) -> tuple[bool, bool]:
    return row["ratio"] <= TARGETS[row["store"]], row["rss_ratio"] <= MEMORY_TARGET


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    out = []
    for store, target in TARGETS.items():
        rows = [row for row in results["rows"] if row["store"] == store]
        if rows:
            worst = max(rows, key=lambda row: row["ratio"])
            measured = f"worst {worst['ratio']:.2f}x ({worst['function']}); " + ", ".join(
                f"{row['function']} {row['ratio']:.2f}x" for row in rows
            )
            out.append(
                (f"cold start ≤ {target}x floor, {store}", measured, worst["ratio"] <= target)
            )
    if results["rows"]:
        worst = max(results["rows"], key=lambda row: row["rss_ratio"])
        measured = (
            f"worst {worst['rss_ratio']:.2f}x RSS ({worst['function']}, {worst['store']}); "
            f"PSS {worst['pss_ratio']:.2f}x"
        )
        out.append(
            (f"memory ≤ {MEMORY_TARGET}x floor", measured, worst["rss_ratio"] <= MEMORY_TARGET)
        )
    return out


def render(results: dict) -> str:
    rows = results["rows"]
    lines = [
        "## coldstart: process start to the first event answered",
        "",
        f"Machine: {describe(results['machine'])}{' (quick run)' if results.get('quick') else ''}.",
        "",
        "Timed: from just before fork/exec of `python -m functions_framework --source "
        "functions/<name>/main.py --target handle` to the last byte of the 2xx answer to the "
        "first CloudEvent, sent (binary mode, `connection: close`) as soon as the port "
        "accepts a connection (polled every 2 ms). The store is initialised and each "
        "event's fixture written before the clock starts. Events: complete-task gets "
        "`todo.task.completed` of a daily task with a pending reminder (it completes it, "
        "cancels the reminder, replies `todo.occurrence.requested`); schedule-next "
        "`todo.task.created` of a new daily task with a reminder; send-reminder "
        "`todo.reminder.due` for one due reminder, mailed to a local SMTP sink; health "
        "`todo.health.probe` (probes the store). The floor is a functions-framework "
        "CloudEvent function that does nothing (`bench/baselines/floor.py`), served the "
        "same way, sent the same request, its runs alternating with the function's (order "
        f"swapped each run), {results['runs']} runs each. DynamoDB is a moto server "
        "started by the benchmark. *Listening* is when the port first accepted a "
        "connection (imports done). Memory: RSS and PSS summed over the process tree "
        "(gunicorn master + uvicorn worker) right after the first answer; RSS counts the "
        "pages the worker shares with the master twice, PSS splits them.",
        "",
        f"Targets: cold start at most {TARGETS[SQLITE]}x the floor with SQLite and "
        f"{TARGETS[DYNAMODB]}x with DynamoDB; memory (RSS) at most {MEMORY_TARGET}x the "
        "floor's.",
        "",
        "Reproduce: `python -m bench coldstart` (`--quick`: 2 runs each).",
        "",
    ]
    cells = []
    for row in rows:
        time_met, memory_met = _met(row)
        cells.append(
            [
                row["store"],
                row["function"],
                f"`{row['event']}`",
                report.ms(row["median_s"], 0),
                report.ms(row["floor_median_s"], 0),
                f"{report.x(row['ratio'])} ({report.verdict(time_met)})",
                f"{report.ms(row['listening_s'], 0)} / {report.ms(row['floor_listening_s'], 0)}",
                report.mib(row["rss_kib"]),
                report.mib(row["floor_rss_kib"]),
                f"{report.x(row['rss_ratio'])} ({report.verdict(memory_met)})",
                f"{report.mib(row['pss_kib'])} ({report.x(row['pss_ratio'])})",
            ]
        )
    lines += report.table(
        [
            "store",
            "function",
            "first event",
            "cold start",
            "floor",
            "ratio (target)",
            "listening: ours / floor",
            "RSS",
            "floor RSS",
            "RSS ratio (target)",
            "PSS (ratio)",
        ],
        cells,
    )
    if results.get("figure"):
        lines += ["", f"![cold start and memory vs the floor]({results['figure']})"]
    lines.append("")
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    plt = report.pyplot()
    if plt is None:
        return []
    rows = results["rows"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = [f"{row['function']}\n{row['store']}" for row in rows]
    positions = range(len(rows))
    width = 0.38
    left.bar(
        [p - width / 2 for p in positions],
        [row["median_s"] * 1000 for row in rows],
        width,
        label="function",
    )
    left.bar(
        [p + width / 2 for p in positions],
        [row["floor_median_s"] * 1000 for row in rows],
        width,
        label="floor",
    )
    for p, row in zip(positions, rows, strict=True):
        left.text(
            p - width / 2,
            row["median_s"] * 1000,
            f"{row['ratio']:.2f}x",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    left.set_xticks(list(positions), labels, fontsize=7, rotation=35, ha="right")
    left.set_ylabel("median cold start (ms)")
    left.set_title("Process start to first 2xx")
    left.legend(fontsize=8)
    right.bar(
        [p - width / 2 for p in positions],
        [row["rss_kib"] / 1024 for row in rows],
        width,
        label="function",
    )
    right.bar(
        [p + width / 2 for p in positions],
        [row["floor_rss_kib"] / 1024 for row in rows],
        width,
        label="floor",
    )
    right.set_xticks(list(positions), labels, fontsize=7, rotation=35, ha="right")
    right.set_ylabel("RSS of the process tree (MiB)")
    right.set_title("Memory after the first event")
    right.legend(fontsize=8)
    figure.tight_layout()
    path = docs / "benchmarks-coldstart.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    results["figure"] = path.name
    return [path]
