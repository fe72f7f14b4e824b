"""Where the time goes, for the targets the other benchmarks miss: profiles taken the same
way every run, so a change shows up in them.

- **imports**: `python -X importtime` of what functions-framework loads before it listens
  (``create_app(target, source)``), ours against the floor, self time summed by top-level
  package: what a cold start pays before the first byte.
- **first event**: pyinstrument around the first request to each function's ASGI app, in a
  fresh interpreter after its imports (SQLite and DynamoDB stores): the lazy imports and
  connections the first event pays for. In-process through httpx's ASGI transport, so the
  server's own HTTP handling is not in it.
- **warm**: py-spy sampling the uvicorn worker while `bench.loadgen` drives it (as in
  `bench.throughput`), samples grouped by the package of the innermost Python frame (a C
  call such as sqlite3's shows as the Python function calling it).
- **pipeline**: py-spy sampling the `nextup dev` dispatcher while completions are posted
  through the ingress at 100/s.

py-spy needs to ptrace the process (root, or CAP_SYS_PTRACE); without it the warm and
pipeline profiles say so and are skipped.

    python -m bench profile
    python -m bench.profile first-event FUNCTION   # the helper run in a fresh interpreter
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from bench import coldstart, describe, events, fixtures, machine, peers, report, throughput
from bench import pipeline as pipeline_bench
from bench.baselines import FLOOR
from bench.localstack import DevStack
from bench.procs import ROOT, Server, server_cpu_split

WARM = ("floor", "complete-task", "schedule-next")
FIRST_EVENT = ("complete-task", "schedule-next")
RATE = 200  # py-spy samples per second
TOP = 12
PIPELINE_RATE = 100
CATEGORIES = (
    # (category, path fragments of the innermost frame's file)
    ("store (SQLite calls)", ("nextup/store/sqlite", "sqlite3")),
    (
        "store (DynamoDB calls)",
        (
            "nextup/store/dynamodb",
            "nextup/store/sigv4",
            "http/client",
            "botocore",
            "boto3",
            "urllib3",
        ),
    ),
    ("store (typed layer)", ("nextup/store/",)),
    ("pydantic (models)", ("pydantic",)),
    ("nextup (other)", ("nextup/",)),
    (
        "HTTP server (uvicorn, h11, starlette, functions-framework)",
        ("uvicorn", "h11", "starlette", "functions_framework", "gunicorn", "cloudevents"),
    ),
    ("HTTP client (httpx, httpcore, anyio)", ("httpx", "httpcore", "anyio", "sniffio")),
    ("Kafka client (aiokafka)", ("aiokafka",)),
    ("logging, json", ("logging", "json")),
    ("asyncio and sockets", ("asyncio", "selectors", "socket")),
)


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


@contextlib.contextmanager
def sampling(pid: int, seconds: float, output: Path) -> Iterator[None]:
    """py-spy records `pid` for `seconds` while the body runs (raw collapsed stacks)."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed")
    argv = [spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(RATE)]
    argv += ["-f", "raw", "-o", str(output), "--nonblocking"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)  # attached before the load starts
        yield
    finally:
        try:
            _, errors = process.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if process.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")


def _frame(text: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame `name (path/file.py:line)`."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", text)
    return (match[1], match[2]) if match else (text, "")


def _category(path: str) -> str:
    for name, fragments in CATEGORIES:
        if any(fragment in path for fragment in fragments):
            return name
    return "other"


def summarise_samples(path: Path) -> dict:
    """Shares of samples by category (innermost frame), the top frames by self and by
    inclusive samples among nextup's own functions."""
    own, inclusive, categories = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(frame) for frame in stack.split(";")]
        function, file = frames[-1]
        own[f"{function} ({file})"] += n
        categories[_category(file)] += n
        for function, file in {f for f in frames if "nextup/" in f[1]}:
            inclusive[f"{function} ({file})"] += n

    def shares(counter: collections.Counter, top: int | None = None) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "categories": shares(categories),
        "self": shares(own, TOP),
        "nextup_inclusive": shares(inclusive, TOP),
    }


# Imports before listening


def import_times(source: Path) -> dict[str, float]:
    """Self import time (ms) by top-level package of what functions-framework loads for
    `source` before it listens."""
    code = (
        "from functions_framework import create_app\n"
        f"create_app(target='handle', source={str(source)!r})\n"
        "import functions_framework._http.gunicorn\n"
    )
    answer = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=True,
    )
    totals: dict[str, float] = collections.defaultdict(float)
    for line in answer.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|", 2)
        totals[name.strip().split(".")[0]] += int(self_us) / 1000
    return dict(totals)


def imports(functions: tuple[str, ...] = coldstart.FUNCTIONS) -> dict:
    floor = import_times(FLOOR)
    ours = {name: import_times(ROOT / "functions" / name / "main.py") for name in functions}
    rows = {}
    for name, times in ours.items():
        extra = {pkg: round(ms - floor.get(pkg, 0.0), 1) for pkg, ms in times.items()}
        top = sorted(extra.items(), key=lambda kv: -kv[1])[:TOP]
        rows[name] = {
            "total_ms": round(sum(times.values()), 1),
            "extra": [[pkg, ms] for pkg, ms in top if ms > 0.5],
        }
    return {"floor_total_ms": round(sum(floor.values()), 1), "functions": rows}


# The first event


def first_event_profiles(
    store_env: dict[str, dict[str, str]], functions: tuple[str, ...] = FIRST_EVENT
) -> dict:
    """pyinstrument's text for each function's first event, per store."""
    out: dict[str, dict[str, str]] = {}
    for store, env in store_env.items():
        for function in functions:
            # The fixture is written from here: the profiled interpreter must not have
            # imported or opened its store before the first event does.
            with coldstart.environ(env):
                coldstart._prepare(function, env["NEXTUP_STORE_URL"], _prefix(function), 0)
            answer = subprocess.run(
                [sys.executable, "-m", "bench.profile", "first-event", function],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, **env},
                check=False,
            )
            if answer.returncode != 0:
                raise RuntimeError(f"first-event profile failed:\n{answer.stderr[-3000:]}")
            out.setdefault(store, {})[function] = answer.stdout
    return out


def _prefix(function: str) -> str:
    return coldstart.PREFIXES[function] + "pf"


def _first_event(function: str) -> str:
    """Run in a fresh interpreter: import the function as functions-framework does, then
    profile only its first request."""
    import httpx
    from functions_framework import create_app
    from pyinstrument import Profiler

    source = ROOT / "functions" / function / "main.py"
    app = create_app(target="handle", source=str(source))
    raw = events.render(coldstart.EVENTS[function][1](_prefix(function)), 0)
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
    headers.pop("content-length", None)

    async def first() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            profiler.start()
            answer = await client.post("/", headers=headers, content=body)
            profiler.stop()
        if not 200 <= answer.status_code < 300:
            raise RuntimeError(f"{function} answered {answer.status_code}: {answer.text[:300]}")
        return profiler.output_text(unicode=False, color=False, show_all=False)

    return asyncio.run(first())


# Warm, under load


def warm(seconds: float, names: tuple[str, ...] = WARM) -> dict:
    out = {}
    by_name = {target.name: target for target in throughput.TARGETS}
    server_cpus, gen_cpu = server_cpu_split()
    backend = peers.backend(gen_cpu)
    try:
        peer_env = {"backend": backend.url, "smtp": ""}
        settings = {"warmup": min(200, int(50 * seconds)), "duration": seconds, "duplicate": 0}
        for name in names:
            with tempfile.TemporaryDirectory(prefix="bench-prof-") as workdir:
                output = Path(workdir) / "samples.txt"

                def during(
                    server: Server, output: Path = output
                ) -> contextlib.AbstractContextManager:
                    worker = server.tree()[-1]  # the uvicorn worker, forked last
                    return sampling(worker, seconds, output)

                result = throughput.measure(
                    by_name[name], settings, peer_env, gen_cpu, server_cpus, during=during
                )
                out[name] = {
                    "per_second": result["measured"]["per_second"],
                    **summarise_samples(output),
                }
    finally:
        backend.stop()
    return out


def pipeline(seconds: float) -> dict:
    count = int(PIPELINE_RATE * seconds)
    with tempfile.TemporaryDirectory(prefix="bench-prof-pipeline-") as workdir:
        stack = DevStack(Path(workdir)).start()
        try:
            # Untimed: first-use imports and connections everywhere, as in `bench.pipeline`.
            _, offsets = asyncio.run(pipeline_bench._read(stack.bootstrap, stack.topic, {}))
            pipeline_bench.step(stack, "warmup", 50, 100, offsets)
            fixtures.create_tasks(
                stack.store_url, fixtures.task_ids("pf-", 0, count), due_in=timedelta(days=1)
            )
            output = Path(workdir) / "dispatcher.txt"
            dispatcher = stack.parts()["dispatcher"][0]
            template = events.completed("pf-", path=stack.ingress_path)
            with sampling(dispatcher, seconds, output):
                pipeline_bench._post(stack, template, count, PIPELINE_RATE, limit_s=seconds + 5)
            return {"rate": PIPELINE_RATE, **summarise_samples(output)}
        finally:
            stack.stop()


def run(
    quick: bool = False,
    functions: tuple[str, ...] = FIRST_EVENT,
    stores: tuple[str, ...] = peers.STORE_KINDS,
    warm_targets: tuple[str, ...] = WARM,
    with_pipeline: bool = True,
    seconds: float | None = None,
) -> dict:
    info = machine()
    seconds = seconds or (3.0 if quick else 8.0)
    results: dict = {"machine": info, "quick": quick, "seconds": seconds}
    results["imports"] = imports(functions)
    with (
        tempfile.TemporaryDirectory(prefix="bench-prof-") as workdir,
        peers.stores(stores, Path(workdir), "bench-prof") as settings,
    ):
        chosen = {store: settings[store] for store in stores}
        for env in chosen.values():
            with coldstart.environ(env):
                fixtures.init(env["NEXTUP_STORE_URL"])
        results["first_event"] = first_event_profiles(chosen, functions)
    if py_spy() is None:
        results["skipped"] = "py-spy is not installed"
        return results
    try:
        results["warm"] = warm(seconds, warm_targets)
        if with_pipeline:
            results["pipeline"] = pipeline(seconds)
    except RuntimeError as exc:  # ptrace refused, most likely
        results["skipped"] = str(exc)[:500]
    return results


# Rendering


def render(results: dict) -> str:
    lines = [
        "## profile: where the time goes",
        "",
        f"Machine: {describe(results['machine'])}{' (quick run)' if results.get('quick') else ''}.",
        "",
        "Reproduce: `python -m bench profile`. The analysis of these profiles, and what "
        "remains, is in *Findings* above.",
        "",
        "### Imports before the port opens",
        "",
        "`python -X importtime` of `create_app(target, source)` plus the gunicorn "
        "application class (what `functions-framework` loads before it listens), self time "
        "summed by top-level package. Floor: "
        f"{results['imports']['floor_total_ms']:,.0f} ms in all.",
        "",
    ]
    rows = []
    for name, row in results["imports"]["functions"].items():
        extra = ", ".join(f"{pkg} {ms:,.0f}" for pkg, ms in row["extra"][:8])
        rows.append([name, f"{row['total_ms']:,.0f} ms", extra])
    lines += report.table(["function", "all imports", "more than the floor, by package (ms)"], rows)
    lines += [
        "",
        "### The first event",
        "",
        "pyinstrument (0.5 ms interval) around the first request, after the imports, in a "
        "fresh interpreter; the store initialised and the fixture written beforehand.",
        "",
    ]
    for store, profiles in results.get("first_event", {}).items():
        for function, text in profiles.items():
            lines += [f"{function}, {store}:", "", "```text", *_trim(text), "```", ""]
    if results.get("skipped"):
        lines += [f"Warm and pipeline profiles skipped: {results['skipped']}", ""]
        return "\n".join(lines)
    lines += [
        "### Warm, under load",
        "",
        f"py-spy ({RATE} Hz) on the uvicorn worker for {results['seconds']:.0f} s while "
        "16 connections drive it as in *throughput*. Share of samples by the package of "
        "the innermost Python frame, then nextup's own functions by inclusive share.",
        "",
    ]
    for name, profile in results["warm"].items():
        lines += _profile_lines(f"{name} ({profile['per_second']:,.0f} events/s)", profile)
    if "pipeline" in results:
        lines += [
            "### The pipeline's dispatcher",
            "",
            f"py-spy on the `nextup dev` dispatcher process for {results['seconds']:.0f} s "
            f"while completions are posted through the ingress at "
            f"{results['pipeline']['rate']}/s (after an untimed warm-up).",
            "",
            *_profile_lines("dispatcher", results["pipeline"]),
        ]
    return "\n".join(lines)


def _profile_lines(title: str, profile: dict) -> list[str]:
    categories = "; ".join(f"{name} {share}%" for name, share in profile["categories"])
    lines = [f"**{title}**, {profile['samples']:,} samples: {categories}.", ""]
    rows = [[name, f"{share}%"] for name, share in profile["self"]]
    lines += report.table(["innermost frame", "samples"], rows)
    if profile["nextup_inclusive"]:
        lines.append("")
        rows = [[name, f"{share}%"] for name, share in profile["nextup_inclusive"]]
        lines += report.table(["nextup function (inclusive)", "samples"], rows)
    lines.append("")
    return lines


def _trim(text: str, width: int = 110, most: int = 34) -> list[str]:
    kept = [line.rstrip()[:width] for line in text.splitlines() if line.strip()]
    return kept[:most] + (["..."] if len(kept) > most else [])


def main(argv: list[str]) -> int:
    if argv[:1] == ["first-event"] and len(argv) == 2:
        print(_first_event(argv[1]))
        return 0
    raise SystemExit("usage: python -m bench.profile first-event FUNCTION")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
