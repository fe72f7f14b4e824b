"""Run benchmarks, merge their results into bench/results.json (keyed by benchmark name,
so running one keeps the others) and regenerate docs/BENCHMARKS.md from all of them.

    python -m bench                 # every benchmark
    python -m bench recurrence      # just one
    python -m bench --quick         # a fast, rough pass
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

# name -> module exposing run(quick) -> dict and render(results) -> str
BENCHMARKS = {
    "recurrence": "bench.recurrence",
}

HEADER = """# Benchmarks

Generated from `bench/results.json` by `python -m bench` (or `make bench`); do not edit by
hand. `python -m bench NAME ...` re-runs the named benchmarks only and keeps the others'
results; `--quick` makes a fast, rough pass. Each section says on what machine and when its
numbers were taken.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and cases")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"bench: running {name}{' (quick)' if args.quick else ''}", file=sys.stderr)
        results[name] = module.run(quick=args.quick)
        for path in getattr(module, "files", lambda *_: [])(results[name], DOCS):
            print(f"bench: wrote {path.relative_to(ROOT)}", file=sys.stderr)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    DOCUMENT.write_text(render_document(results))
    print(
        f"bench: wrote {RESULTS.relative_to(ROOT)} and {DOCUMENT.relative_to(ROOT)}",
        file=sys.stderr,
    )
    return 0


def render_document(results: dict) -> str:
    sections = [HEADER]
    for name in sorted(results):
        if name in BENCHMARKS:
            sections.append(importlib.import_module(BENCHMARKS[name]).render(results[name]))
        else:  # a benchmark since removed: keep its numbers visible
            sections.append(f"## {name}\n\n```json\n{json.dumps(results[name], indent=1)}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
