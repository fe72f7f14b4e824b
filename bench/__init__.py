"""Benchmarks: ``python -m bench [--quick] [NAME ...]`` (see `bench.__main__`).

Each benchmark is a module listed in `bench.__main__.BENCHMARKS` with ``run(quick) ->
dict`` (JSON-able results) and ``render(results) -> str`` (a Markdown section), and
optionally ``files(results, docs) -> list[Path]`` for figures written next to the doc.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def machine() -> dict:
    """Where and when a benchmark ran, stored with its results."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # Other work on the machine skews timings; this says how busy it was at the start.
        "load": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "commit": commit(),
    }


def commit() -> str | None:
    """The checked-out commit, with `+changes` when the work tree differs from it: which
    code a result measured, so runs before and after a change can be told apart."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "functions"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}{'+changes' if dirty else ''}" if head else None


def describe(info: dict) -> str:
    load = f", load average {info['load']} at the start" if info.get("load") is not None else ""
    code = f", code at {info['commit']}" if info.get("commit") else ""
    return (
        f"{info['cpus']} CPUs, {info['implementation']} {info['python']} on {info['platform']}, "
        f"run {info['date']}{load}{code}"
    )
