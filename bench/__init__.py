"""Benchmarks: ``python -m bench [--quick] [NAME ...]`` (see `bench.__main__`).

Each benchmark is a module listed in `bench.__main__.BENCHMARKS` with ``run(quick) ->
dict`` (JSON-able results) and ``render(results) -> str`` (a Markdown section), and
optionally ``files(results, docs) -> list[Path]`` for figures written next to the doc.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime


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
    }


def describe(info: dict) -> str:
    load = f", load average {info['load']} at the start" if info.get("load") is not None else ""
    return (
        f"{info['cpus']} CPUs, {info['implementation']} {info['python']} on {info['platform']}, "
        f"run {info['date']}{load}"
    )
