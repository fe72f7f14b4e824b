"""What the console costs: the pipeline's recurring completions through `nextup dev` at one
rate, with the console off (`--no-console`: no ring of attempts in the dispatcher, no
traceparent stamped at the ingress, no /ui), on with no browser open (what every
`nextup dev` pays), and on with a browser showing the live timeline (headless Chromium on
`/ui`, redrawing on every change), in one run.

Three stacks run side by side for the whole benchmark, one per condition, so each pays for
the others' idle processes alike and grows by the same steps. The conditions alternate, each
in every round, in a rotated order; each step is `bench.pipeline.step` (the same tasks, posting,
draining and CPU accounting as the pipeline benchmark). The figures that matter are the
ratios to "off" of the CPU each completion cost the whole stack, and of its part in the two
processes the console touches (`nextup dev` itself, which serves /ui and keeps the
timeline, and the dispatcher, which keeps the ring).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import describe, machine
from bench.localstack import DevStack
from bench.pipeline import WARMUP_RATE, _partitions, _read, step

CONDITIONS = ("off", "on", "watched")
FULL = {"rate": 150, "duration": 10.0, "rounds": 5, "warmup": 100}
QUICK = {"rate": 50, "duration": 2.0, "rounds": 1, "warmup": 20}
CHROMIUM = "/usr/bin/chromium"
# What "costs nothing measurable" is held to: CPU per completion within 5% of "off".
TARGET_RATIO = 1.05
TOUCHED = ("nextup-dev", "dispatcher")


def run(quick: bool = False, settings: dict | None = None) -> dict:
    settings = settings or (QUICK if quick else FULL)
    rate, rounds = settings["rate"], settings["rounds"]
    count = math.ceil(rate * settings["duration"])
    info = machine()
    steps: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-console-") as workdir:
        # A stack per condition: each grows by the same steps (CPU per event rises a little
        # as the store and topics fill), so none is measured on more data than another.
        stacks = {
            "off": DevStack(Path(workdir) / "off", "--no-console"),
            "on": DevStack(Path(workdir) / "on"),
            "watched": DevStack(Path(workdir) / "watched"),
        }
        offsets: dict[str, dict] = {}
        try:
            for name, stack in stacks.items():
                stack.start()
                asyncio.run(_partitions(stack.bootstrap, stack.topic))
                _, offsets[name] = asyncio.run(_read(stack.bootstrap, stack.topic, {}))
                step(stack, f"warm{name}", WARMUP_RATE, settings["warmup"], offsets[name])
            for round_ in range(rounds):
                order = CONDITIONS[round_ % 3 :] + CONDITIONS[: round_ % 3]
                for condition in order:
                    stack = stacks[condition]
                    with watching(stack if condition == "watched" else None):
                        row = step(stack, f"{condition}{round_}", rate, count, offsets[condition])
                    steps.append({"condition": condition, "round": round_, **row})
        finally:
            for stack in stacks.values():
                stack.stop()
    return {
        "machine": info,
        "quick": quick,
        "settings": settings,
        "steps": steps,
        "summary": summarize(steps),
    }


# A browser on a page, in a process of its own (Playwright's synchronous API keeps an event
# loop on its thread, which the steps' own asyncio.run would collide with): it says
# "ready" once the live stream is open and closes when its stdin does.
_WATCH = """
import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=sys.argv[1], headless=True)
    page = browser.new_page()
    page.goto(sys.argv[2])
    page.wait_for_selector("#live.on", timeout=30000)
    print("ready", flush=True)
    sys.stdin.read()
    browser.close()
"""


@contextlib.contextmanager
def watching(stack: DevStack | None) -> Iterator[None]:
    """Headless Chromium showing the stack's live timeline for the length of a step (None:
    no page open)."""
    if stack is None:
        yield
        return
    viewer = subprocess.Popen(
        [sys.executable, "-c", _WATCH, CHROMIUM, stack.base + "/ui"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if viewer.stdout.readline().strip() != "ready":
            raise RuntimeError("the browser did not open the console's live timeline")
        yield
    finally:
        viewer.stdin.close()
        try:
            viewer.wait(30)
        except subprocess.TimeoutExpired:
            viewer.kill()
            viewer.wait()


def _total(row: dict, parts: tuple[str, ...] | None = None) -> float:
    cpu = row["cpu_ms_per_completion"]
    return sum(v for k, v in cpu.items() if parts is None or k in parts)


def summarize(steps: list[dict]) -> dict:
    """Per condition: the median over rounds of CPU per completion (the whole stack, and the
    processes the console touches), latency and sustained rate; ratios to "off"."""
    out: dict[str, dict] = {}
    for condition in CONDITIONS:
        rows = [s for s in steps if s["condition"] == condition]
        if not rows:
            continue
        out[condition] = {
            "rounds": len(rows),
            "cpu_ms": round(statistics.median(_total(r) for r in rows), 3),
            "touched_cpu_ms": round(statistics.median(_total(r, TOUCHED) for r in rows), 3),
            "p50_ms": statistics.median(r["p50_ms"] or 0.0 for r in rows),
            "p99_ms": statistics.median(r["p99_ms"] or 0.0 for r in rows),
            "per_second": statistics.median(r["per_second"] or 0.0 for r in rows),
            "stored": sum(r["stored"] for r in rows),
            "posted": sum(r["posted"] for r in rows),
        }
    base = out.get("off")
    for row in out.values():
        if base:
            row["cpu_ratio"] = round(row["cpu_ms"] / base["cpu_ms"], 3) if base["cpu_ms"] else None
            row["touched_ratio"] = (
                round(row["touched_cpu_ms"] / base["touched_cpu_ms"], 3)
                if base["touched_cpu_ms"]
                else None
            )
    return out


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    on = results["summary"].get("on", {})
    ratio = on.get("cpu_ratio")
    if ratio is None:
        return [(f"console, no browser: CPU per event ≤ {TARGET_RATIO}x off", "not measured", None)]
    return [
        (
            f"console, no browser: CPU per event ≤ {TARGET_RATIO}x off",
            f"{ratio:.2f}x (console's processes {on.get('touched_ratio', 0):.2f}x)",
            ratio <= TARGET_RATIO,
        )
    ]


def render(results: dict) -> str:
    settings = results["settings"]
    lines = [
        "## The console's cost",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        f"{describe(results['machine'])}. {settings['rounds']} rounds of "
        f"{math.ceil(settings['rate'] * settings['duration'])} completions at "
        f"{settings['rate']}/s per condition, alternating. Medians over the rounds; CPU is "
        "per completion stored, over every process of the stack.",
        "",
        "| console | CPU ms / completion | vs off | nextup dev + dispatcher ms | vs off "
        "| p50 ms | p99 ms | completions/s | stored / posted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    words = {"off": "off (`--no-console`)", "on": "on, no browser", "watched": "on, a browser open"}
    for condition, row in results["summary"].items():
        lines.append(
            f"| {words[condition]} | {row['cpu_ms']:.2f} | {row.get('cpu_ratio') or 0:.2f}x "
            f"| {row['touched_cpu_ms']:.2f} | {row.get('touched_ratio') or 0:.2f}x "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['per_second']:.0f} "
            f"| {row['stored']} / {row['posted']} |"
        )
    lines += [
        "",
        "With no browser open the console costs one append per event at the ingress and one "
        "per delivery attempt in the dispatcher (a bounded ring), and a `traceparent` stamped "
        "on events that come without one; nothing is read or formatted until a browser or "
        "`nextup deadletters` / `nextup ping` asks. With a browser open, the page is told of "
        "changes at most twice a second and fetches the timeline it shows.",
        "",
    ]
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    return []
