"""Run benchmarks, merge their results into bench/results.json (keyed by benchmark name,
so running one keeps the others) and regenerate docs/BENCHMARKS.md from all of them.

    python -m bench                 # every benchmark (about 15 minutes on 2 cores)
    python -m bench coldstart       # just one (or several)
    python -m bench --quick         # a fast, rough pass (a few minutes)
    python -m bench --render        # rewrite docs/BENCHMARKS.md from bench/results.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DOCS = ROOT / "docs"
DOCUMENT = DOCS / "BENCHMARKS.md"

FINDINGS = ROOT / "bench" / "FINDINGS.md"

# name -> module exposing run(quick) -> dict and render(results) -> str, optionally
# files(results, docs) -> [Path] and verdicts(results) -> [(target, measured, met)];
# the document keeps this order.
BENCHMARKS = {
    "coldstart": "bench.coldstart",
    "throughput": "bench.throughput",
    "pipeline": "bench.pipeline",
    "storecalls": "bench.storecalls",
    "sweep": "bench.sweep",
    "console": "bench.console",
    "recurrence": "bench.recurrence",
    "profile": "bench.profile",
}

HEADER = """# Benchmarks

Generated from `bench/results.json` by `python -m bench` (or `make bench`); do not edit by
hand (the *Findings* section comes from `bench/FINDINGS.md`). `python -m bench NAME ...`
re-runs the named benchmarks only (`coldstart`, `throughput`, `pipeline`, `storecalls`,
`sweep`, `console`, `recurrence`, `profile`) and keeps the others' results; `--quick`
makes a fast, rough pass (a few minutes); the full run takes about 15 minutes on 2 cores.
Benchmarks are not part of `make test`; `tests/test_bench_smoke.py` runs each on a tiny
input.

These machines are shared and noisy: every figure that matters is a ratio to a baseline
measured in the same run, alternating with it. Absolute times are context only; each
section says on what machine, when, and under what load average its numbers were taken.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and cases")
    parser.add_argument(
        "--render", action="store_true", help="only regenerate the document from results.json"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.render:
        from bench.procs import precompile

        precompile()  # every process starts as a deployed one does: from bytecode
    for name in [] if args.render else args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"bench: running {name}{' (quick)' if args.quick else ''}", file=sys.stderr)
        results[name] = module.run(quick=args.quick)
        _draw(name, results[name])
    if args.render:  # plots are drawn from results alone: redraw them all
        for name in [name for name in BENCHMARKS if name in results]:
            _draw(name, results[name])
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    DOCUMENT.write_text(render_document(results))
    print(
        f"bench: wrote {RESULTS.relative_to(ROOT)} and {DOCUMENT.relative_to(ROOT)}",
        file=sys.stderr,
    )
    return 0


def _draw(name: str, results: dict) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    for path in getattr(module, "files", lambda *_: [])(results, DOCS):
        print(f"bench: wrote {path.relative_to(ROOT)}", file=sys.stderr)


def render_document(results: dict, findings: Path = FINDINGS) -> str:
    known = [name for name in BENCHMARKS if name in results]
    sections = [HEADER, _at_a_glance(results, known)]
    if findings.exists():
        sections.append(findings.read_text())
    for name in known:
        sections.append(importlib.import_module(BENCHMARKS[name]).render(results[name]))
    for name in sorted(set(results) - set(BENCHMARKS)):  # since removed: keep its numbers
        sections.append(f"## {name}\n\n```json\n{json.dumps(results[name], indent=1)}\n```\n")
    return "\n".join(sections)


def _at_a_glance(results: dict, names: list[str]) -> str:
    """Every target with what was measured against it and whether it was met."""
    rows = []
    for name in names:
        verdicts = getattr(importlib.import_module(BENCHMARKS[name]), "verdicts", None)
        if verdicts is None:
            continue
        when = results[name].get("machine", {}).get("date", "?")
        quick = " (quick)" if results[name].get("quick") else ""
        for target, measured, met in verdicts(results[name]):
            verdict = "not measured" if met is None else "met" if met else "**missed**"
            rows.append(f"| {target} | {measured} | {verdict} | {name}, {when}{quick} |")
    if not rows:
        return ""
    return "\n".join(
        [
            "## Targets at a glance",
            "",
            "| target (issues 6 and 13) | measured | verdict | benchmark, run |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
