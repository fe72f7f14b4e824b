"""Warm throughput: each function in one process, 16 keep-alive connections, closed loop.

The server under test (gunicorn master + one uvicorn worker, as functions-framework serves
it) is pinned to the first CPU; the load generator (`bench.loadgen`, a process of its own)
and the peers (the backend API, the SMTP sink) to the last. Each target starts fresh, with
a fresh SQLite store, gets a warm-up of `WARMUP` events, then is driven for `DURATION`
seconds. Every event is distinct (its own id, and its own task where the function keeps
task state), so the function does its real work each time; the tasks complete-task
completes and the due reminders send-reminder sends are written into the store beforehand
(untimed), as many as the warm-up's rate says the measured phase can use. The duplicate
(redelivery) path is measured separately on the same process: the warm-up's first event
sent again and again, answered from its stored receipt.

Rounds repeat the whole set, rotating the order; a figure is the median over rounds and a
ratio the median of per-round ratios, so the floor and the function compared were measured
minutes apart at most.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench import describe, events, fixtures, loadgen, machine, peers, report
from bench.baselines import FLOOR
from bench.procs import ROOT, Server, free_port, function_argv, pin, server_cpu_split

CONNECTIONS = 16
FULL = {"rounds": 3, "duration": 8.0, "warmup": 300, "duplicate": 4.0}
QUICK = {"rounds": 1, "duration": 2.0, "warmup": 40, "duplicate": 1.0}
# Fixtures for the measured phase: the warm-up's rate times this margin, at most this many.
MARGIN, MOST = 1.6, 40_000
# Warm throughput against the floor: what issue 13 sets from CPython's cost with a real
# write (schedule-next without the todo app's API, whose POST is the API's cost).
FLOOR_TARGETS = {"complete-task": 0.35, "schedule-next, no backend": 0.3}
SEED = "seed-style"


@dataclass(frozen=True)
class Target:
    name: str
    server: str  # "floor", "seed", or a function's directory under functions/
    doing: str  # what each request makes it do, for the document
    template: Callable[[str], str]
    prefix: str
    fixture: timedelta | None = None  # pre-create a task per event, due this far from now
    duplicate: bool = False
    backend: bool = False
    smtp: bool = False


TARGETS = (
    Target(
        "floor",
        "floor",
        "parses the CloudEvent, does nothing, answers 200",
        events.completed,
        "fl",
    ),
    Target(
        "complete-task",
        "complete-task",
        "`todo.task.completed` of a distinct daily task: completes it, cancels its "
        "reminder, replies `todo.occurrence.requested` (200)",
        events.completed,
        "ct",
        fixture=timedelta(days=1),
        duplicate=True,
    ),
    Target(
        "schedule-next",
        "schedule-next",
        "`todo.occurrence.requested` of a distinct series: computes and creates the next "
        "occurrence, schedules its reminder, POSTs it to the backend, replies "
        "`todo.task.scheduled` (200)",
        events.occurrence_requested,
        "so",
        duplicate=True,
        backend=True,
    ),
    Target(
        "schedule-next, no backend",
        "schedule-next",
        "the same `todo.occurrence.requested`, with no backend configured (no POST)",
        events.occurrence_requested,
        "sb",
    ),
    Target(
        "schedule-next created",
        "schedule-next",
        "`todo.task.created` of a distinct new task: registers it, schedules its reminder (202)",
        events.created,
        "sc",
    ),
    Target(
        "send-reminder",
        "send-reminder",
        "`todo.reminder.due` for one distinct due reminder: claims it, mails it (SMTP sink), "
        "marks it sent, replies `todo.reminder.sent` (200)",
        events.reminder_due,
        "sr",
        fixture=timedelta(minutes=-1),
        smtp=True,
    ),
    Target(
        "health",
        "health",
        "`todo.health.probe`: probes the store, replies `todo.health.reported` (200)",
        events.health_probe,
        "hp",
    ),
    Target(
        SEED,
        "seed",
        "the seed's `task.completed` (Dapr envelope) of a distinct task: next occurrence "
        "with dateutil, state-store lookup, POST to the backend, state-store save (200)",
        events.seed_completed,
        "sd",
        duplicate=True,
        backend=True,
    ),
)
NAMES = tuple(target.name for target in TARGETS)


def _server(target: Target, workdir: Path, env: dict[str, str]) -> Server:
    port = free_port()
    if target.server == "floor":
        return Server("floor", function_argv(port, FLOOR), port, env=env)
    if target.server == "seed":
        argv = [sys.executable, "-m", "uvicorn", "bench.baselines.seed_style:app"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        argv += ["--log-level", "warning"]
        seed_env = {**env, "SEED_STATE_DB": str(workdir / "seed-state.db")}
        return Server("seed-style", argv, port, env=seed_env)
    source = ROOT / "functions" / target.server / "main.py"
    return Server(target.server, function_argv(port, source), port, env=env)


def _ready_path(target: Target) -> str:
    return "/health/liveness" if target.server not in ("floor", "seed") else "/"


def generate(spec: dict) -> dict:
    """Run the load generator in its own process (pinned by the spec's `cpu`)."""
    result = loadgen.in_process(spec)
    result.pop("records", None)
    return result


def _fixtures(target: Target, store_url: str, first: int, count: int) -> None:
    if target.fixture is not None and count > 0:
        ids = fixtures.task_ids(target.prefix, first, count)
        fixtures.create_tasks(store_url, ids, due_in=target.fixture)


def measure(
    target: Target,
    settings: dict,
    peer_env: dict[str, str],
    gen_cpu: int | None,
    server_cpus: set[int] | None,
    during: Callable[[Server], contextlib.AbstractContextManager] | None = None,
) -> dict:
    """One target, fresh process and store: warm-up, measured phase, duplicate phase.
    `during(server)` is entered around the measured phase (a profiler, say)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{target.prefix}-"))
    store_url = f"sqlite:///{workdir / 'state.db'}"
    fixtures.init(store_url)
    env = {"NEXTUP_STORE_URL": store_url}
    if target.backend:
        env["NEXTUP_BACKEND_URL"] = env["SEED_BACKEND_URL"] = peer_env["backend"]
    if target.smtp:
        env["NEXTUP_SMTP_URL"] = peer_env["smtp"]
    server = _server(target, workdir, env)
    template = target.template(target.prefix)
    warmup = settings["warmup"]
    try:
        _fixtures(target, store_url, 0, warmup)
        server.start(_ready_path(target))
        pin(server.tree(), server_cpus)
        base = {"host": "127.0.0.1", "port": server.port, "connections": CONNECTIONS}
        base["cpu"] = gen_cpu
        warm = generate(
            {**base, "template": template, "first": 0, "limit": warmup, "duration": 120.0}
        )
        limit = None
        if target.fixture is not None:
            limit = min(MOST, math.ceil(warm["per_second"] * settings["duration"] * MARGIN) + 50)
            _fixtures(target, store_url, warmup, limit)
        posts_before = peers.backend_posts_at(peer_env["backend"]) if target.backend else None
        with during(server) if during is not None else contextlib.nullcontext():
            measured = generate(
                {
                    **base,
                    "template": template,
                    "first": warmup,
                    "limit": limit,
                    "duration": settings["duration"],
                }
            )
        if posts_before is not None:
            measured["backend_posts"] = peers.backend_posts_at(peer_env["backend"]) - posts_before
        measured["fixtures"] = limit
        measured["memory"] = server.memory()
        result = {"warmup": warm, "measured": measured}
        if target.duplicate and settings["duplicate"] > 0:
            # The warm-up's first event again: every one of these is a redelivery.
            again = events.render(template, 0).decode("latin-1")
            result["duplicate"] = generate(
                {**base, "template": again, "limit": None, "duration": settings["duplicate"]}
            )
        return result
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wrk_floor(settings: dict, gen_cpu: int | None, server_cpus) -> dict | None:
    """The floor driven by wrk (when installed), to check our generator against it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = Path(tempfile.mkstemp(prefix="bench-wrk-", suffix=".lua")[1])
    script.write_text(WRK_SCRIPT)
    port = free_port()
    server = Server("floor", function_argv(port, FLOOR), port)
    try:
        server.start("/")
        pin(server.tree(), server_cpus)
        argv = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, int(settings['duration']))}s"]
        argv += ["--latency", "-s", str(script), server.url + "/"]
        if gen_cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(gen_cpu), *argv]
        output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        server.stop()
        script.unlink(missing_ok=True)
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            found["per_second"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            found[f"p{parts[0][:-1]}_ms"] = _wrk_ms(parts[1])
    return found


def _wrk_ms(text: str) -> float:
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return round(float(text[: -len(suffix)]) * factor, 3)
    return float(text)


WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local body = '{"user_id":"u01","task_id":"w' .. n ..
    '","completed_at":"2026-11-24T21:00:00+00:00"}'
  return wrk.format("POST", "/", {["ce-specversion"]="1.0", ["ce-id"]="wrk-" .. n,
    ["ce-source"]="/bench/wrk", ["ce-type"]="todo.task.completed",
    ["content-type"]="application/json"}, body)
end
"""


def run(
    quick: bool = False,
    names: tuple[str, ...] = NAMES,
    settings: dict | None = None,
    wrk_check: bool = True,
) -> dict:
    settings = settings or (QUICK if quick else FULL)
    info = machine()
    server_cpus, gen_cpu = server_cpu_split()
    chosen = [target for target in TARGETS if target.name in names]
    rounds: list[dict[str, dict]] = []
    backend = peers.backend(gen_cpu)
    smtp = peers.smtp(gen_cpu)
    try:
        peer_env = {"backend": backend.url, "smtp": f"smtp://127.0.0.1:{smtp.port}"}
        for number in range(settings["rounds"]):
            shift = number % len(chosen)
            order = chosen[shift:] + chosen[:shift]
            rounds.append(
                {t.name: measure(t, settings, peer_env, gen_cpu, server_cpus) for t in order}
            )
        wrk = _wrk_floor(settings, gen_cpu, server_cpus) if "floor" in names and wrk_check else None
    finally:
        backend.stop()
        smtp.stop()
    return {
        "machine": info,
        "quick": quick,
        "settings": {**settings, "connections": CONNECTIONS},
        "pinned": {"server": sorted(server_cpus or []), "generator": gen_cpu},
        "doing": {t.name: t.doing for t in chosen},
        "rounds": rounds,
        "summary": summarise(rounds),
        "wrk_floor": wrk,
    }


def summarise(rounds: list[dict[str, dict]]) -> dict:
    names = list(dict.fromkeys(name for one in rounds for name in one))
    summary: dict[str, dict] = {}
    for name in names:
        for phase in ("measured", "duplicate"):
            samples = [one[name][phase] for one in rounds if phase in one.get(name, {})]
            if not samples:
                continue
            key = name if phase == "measured" else f"{name} duplicate"
            row = {
                metric: report.median([s[metric] for s in samples if s[metric] is not None])
                for metric in ("per_second", "p50_ms", "p99_ms", "cpu_share")
            }
            row["requests"] = sum(s["requests"] for s in samples)
            row["not_2xx"] = sum(s["requests"] - s["ok"] for s in samples)
            row["statuses"] = _merged([s["statuses"] for s in samples])
            for base in ("floor", SEED):
                ratios = [
                    one[name][phase]["per_second"] / one[base]["measured"]["per_second"]
                    for one in rounds
                    if phase in one.get(name, {}) and base in one
                ]
                row[f"vs_{'seed' if base == SEED else base}"] = (
                    round(report.median(ratios), 2) if ratios else None
                )
            summary[key] = row
    return summary


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for status, n in count.items():
            merged[status] = merged.get(status, 0) + n
    return merged


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    """Each floor target (issue 13: what CPython with a real write allows) and, for the
    two functions, whether they beat the seed-style service."""
    summary = results["summary"]
    floor_rate = summary["floor"]["per_second"]
    out: list[tuple[str, str, bool | None]] = []
    for name, target in FLOOR_TARGETS.items():
        row = summary.get(name)
        if row is None:
            continue
        out.append(
            (
                f"warm {name} ≥ {target}x floor",
                f"{row['vs_floor']:.2f}x ({row['per_second']:,.0f}/s vs floor {floor_rate:,.0f}/s)",
                row["vs_floor"] >= target,
            )
        )
    for name in ("complete-task", "schedule-next"):
        row = summary.get(name)
        if row is None:
            continue
        seed = row.get("vs_seed")
        seed_rate = summary.get(SEED, {}).get("per_second")
        out.append(
            (
                f"warm {name} above the seed-style service",
                "-" if seed is None else f"{seed:.2f}x (seed-style {seed_rate:,.0f}/s)",
                None if seed is None else seed > 1.0,
            )
        )
    return out


def render(results: dict) -> str:
    summary = results["summary"]
    settings = results["settings"]
    pinned = results["pinned"]
    where = (
        f"server on CPU {', '.join(map(str, pinned['server']))}, load generator and peers on "
        f"CPU {pinned['generator']}"
        if pinned["generator"] is not None
        else "no pinning (one CPU)"
    )
    lines = [
        "## throughput: warm, 16 keep-alive connections",
        "",
        f"Machine: {describe(results['machine'])}{' (quick run)' if results.get('quick') else ''}.",
        "",
        f"Each target in one process ({where}), with a fresh SQLite store, "
        f"{settings['warmup']} warm-up events, then {settings['duration']:.0f} s closed loop "
        f"over {settings['connections']} keep-alive connections from `bench/loadgen.py` "
        "(its own process). Every event is distinct, with its own id and task: the tasks "
        "to complete and the due reminders to send are written into the store beforehand. "
        "*Duplicate* rows send the warm-up's first event again for "
        f"{settings['duplicate']:.0f} s: every one a redelivery, answered from its receipt. "
        f"{settings['rounds']} round(s), order rotated each round; figures are medians over "
        "rounds, ratios medians of per-round ratios. Latency is from writing a request to "
        "reading its whole answer. *Gen CPU* is the generator's CPU time over the run's "
        "length: well below 1.0 means it was not the bottleneck. The backend (`POST "
        "/api/tasks`) and SMTP sink are minimal local servers (`bench/peers.py`); "
        "schedule-next and the seed-style service both POST every next occurrence to the "
        "same backend.",
        "",
        "Targets: "
        + "; ".join(f"{what}: {report.verdict(met)}" for what, _, met in verdicts(results))
        + ".",
        "",
        "Reproduce: `python -m bench throughput` (`--quick`: one short round).",
        "",
    ]
    doing = results["doing"]
    cells = []
    for name, row in summary.items():
        base = name.removesuffix(" duplicate")
        what = "the same event again: a redelivery" if name.endswith("duplicate") else doing[base]
        statuses = ", ".join(f"{n} x {s}" for s, n in sorted(row["statuses"].items()))
        cells.append(
            [
                f"**{name}**" if name in ("complete-task", "schedule-next") else name,
                what,
                f"{row['per_second']:,.0f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                report.x(row["vs_floor"]),
                report.x(row["vs_seed"]),
                f"{row['cpu_share']:.2f}",
                statuses,
            ]
        )
    lines += report.table(
        [
            "target",
            "each request",
            "events/s",
            "p50 ms",
            "p99 ms",
            "vs floor",
            "vs seed-style",
            "gen CPU",
            "answers",
        ],
        cells,
    )
    wrk = results.get("wrk_floor")
    if wrk:
        lines += [
            "",
            f"Check of the generator: wrk (1 thread, {settings['connections']} connections, "
            "a Lua script giving each event its own id) drove the floor at "
            f"{wrk.get('per_second', 0):,.0f} events/s, p50 {wrk.get('p50_ms', 0):.1f} ms, "
            f"p99 {wrk.get('p99_ms', 0):.1f} ms, right after the rounds.",
        ]
    if results.get("figure"):
        lines += ["", f"![warm throughput]({results['figure']})"]
    lines.append("")
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    plt = report.pyplot()
    if plt is None:
        return []
    summary = results["summary"]
    names = list(summary)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = [
        "tab:grey" if n == "floor" else "tab:orange" if n.startswith(SEED) else "tab:blue"
        for n in names
    ]
    left.barh(names, [summary[n]["per_second"] for n in names], color=colours)
    left.set_xlabel("events/s (16 connections)")
    left.invert_yaxis()
    left.set_title("Warm throughput")
    positions = range(len(names))
    right.barh(
        [p - 0.2 for p in positions], [summary[n]["p50_ms"] for n in names], 0.4, label="p50"
    )
    right.barh(
        [p + 0.2 for p in positions], [summary[n]["p99_ms"] for n in names], 0.4, label="p99"
    )
    right.set_yticks(list(positions), names)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("latency (ms, log)")
    right.set_title("Latency")
    right.legend(fontsize=8)
    figure.tight_layout()
    path = docs / "benchmarks-throughput.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    results["figure"] = path.name
    return [path]
