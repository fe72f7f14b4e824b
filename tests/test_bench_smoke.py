"""Each benchmark runs on a tiny input and returns well-formed results that render, without
touching docs/ (the real runs are `make bench`, never part of `make test`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` lives at the repository root, beside `tests`
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    coldstart,
    console,
    pipeline,
    profile,
    storecalls,
    sweep,
    throughput,
)
from bench.__main__ import BENCHMARKS, render_document  # noqa: E402


@pytest.fixture(autouse=True)
def docs_untouched() -> Iterator[None]:
    before = {path: path.stat().st_mtime for path in (ROOT / "docs").glob("*")}
    yield
    assert {path: path.stat().st_mtime for path in (ROOT / "docs").glob("*")} == before


def _renders(name: str, results: dict, tmp_path: Path) -> str:
    module = sys.modules[BENCHMARKS[name]]
    for path in module.files(results, tmp_path):  # the plot, drawn into tmp_path
        assert path.parent == tmp_path and path.stat().st_size > 0
    for target, measured, met in module.verdicts(results):
        assert target and measured and met in (True, False, None)
    text = render_document({name: results}, findings=tmp_path / "none.md")
    assert "## Targets at a glance" in text
    return text


def test_coldstart(tmp_path: Path) -> None:
    results = coldstart.run(functions=("health",), stores=("sqlite",), runs=1)
    [row] = results["rows"]
    assert row["function"] == "health" and row["event"] == "todo.health.probe"
    assert len(row["ours"]) == len(row["floor"]) == 1
    assert 0 < row["listening_s"] < row["median_s"] and row["ratio"] > 0
    assert row["rss_kib"] > 0 and row["pss_kib"] > 0 and row["rss_ratio"] > 0
    assert "| sqlite | health |" in _renders("coldstart", results, tmp_path)


def test_throughput(tmp_path: Path) -> None:
    settings = {"rounds": 1, "duration": 0.5, "warmup": 10, "duplicate": 0.3}
    results = throughput.run(names=("floor", "complete-task"), settings=settings, wrk_check=False)
    summary = results["summary"]
    assert set(summary) == {"floor", "complete-task", "complete-task duplicate"}
    for row in summary.values():
        assert row["per_second"] > 0 and row["p50_ms"] <= row["p99_ms"]
        assert row["not_2xx"] == 0 and row["vs_floor"] > 0
    assert summary["floor"]["vs_floor"] == 1.0
    measured = results["rounds"][0]["complete-task"]["measured"]
    assert measured["fixtures"] >= measured["requests"]  # every completion had its own task
    assert "**complete-task**" in _renders("throughput", results, tmp_path)


def test_pipeline(tmp_path: Path) -> None:
    settings = {"duration": 1.0, "ceiling": 200, "max_least": 20}
    results = pipeline.run(rates=(20,), settings=settings, warmup=10)
    assert results["ceiling"]["per_second"] > 0
    assert [s["label"] for s in results["steps"]] == ["20", "max"]
    for s in results["steps"]:
        assert s["drained"] and s["accepted"] == s["posted"]
        assert s["completed"] == s["stored"] == s["posted"]  # every next occurrence stored
        assert 0 < s["p50_ms"] <= s["p99_ms"] and s["per_second"] > 0
        assert s["cpu_ms_per_completion"]["complete-task"] > 0
    assert "| 20/s | 20 |" in _renders("pipeline", results, tmp_path)


def test_profile(tmp_path: Path) -> None:
    results = profile.run(
        functions=("health",),
        stores=("sqlite",),
        warm_targets=("floor",),
        with_pipeline=False,
        seconds=1.0,
    )
    assert results["imports"]["functions"]["health"]["total_ms"] > 0
    assert "App.post" in results["first_event"]["sqlite"]["health"]
    if "skipped" not in results:  # py-spy may not be allowed to attach (ptrace)
        floor = results["warm"]["floor"]
        assert floor["samples"] > 0 and floor["categories"]
    text = render_document({"profile": results}, findings=tmp_path / "none.md")
    assert "### Imports before the port opens" in text


def test_console(tmp_path: Path) -> None:
    settings = {"rate": 20, "duration": 1.0, "rounds": 1, "warmup": 5}
    results = console.run(settings=settings)
    summary = results["summary"]
    assert set(summary) == {"off", "on", "watched"}
    for row in summary.values():
        assert row["stored"] == row["posted"] == 20
        assert row["cpu_ms"] > 0 and row["cpu_ratio"] > 0
    assert summary["off"]["cpu_ratio"] == 1.0
    assert "| on, a browser open |" in _renders("console", results, tmp_path)


def test_storecalls(tmp_path: Path) -> None:
    results = storecalls.run(events=1)
    summary = results["summary"]
    for case in ("todo.task.created", "todo.task.completed", "todo.occurrence.requested"):
        assert summary[case]["calls"] == sum(summary[case]["operations"].values()) > 0
    # A redelivery is answered from its receipt: it reads, it never writes.
    assert "TransactWriteItems" not in summary["todo.task.completed, redelivered"]["operations"]
    cycle = summary["a recurring cycle (completed + occurrence)"]
    assert cycle["calls"] == pytest.approx(
        summary["todo.task.completed"]["calls"] + summary["todo.occurrence.requested"]["calls"]
    )
    assert "| todo.task.created |" in _renders("storecalls", results, tmp_path)


def test_sweep(tmp_path: Path) -> None:
    results = sweep.run(reminders=30, users=3)
    for kind, row in results["rows"].items():
        assert row["mails"] == row["distinct_mails"] == 30, kind  # each reminder mailed once
        assert row["announced"] >= 30 and row["per_second"] > 0 and row["ticks"] >= 1
    dynamodb = results["rows"]["dynamodb"]
    assert dynamodb["calls_per_reminder"] == round(sum(dynamodb["calls"].values()) / 30, 3)
    assert "TransactWriteItems" in dynamodb["operations"]  # claims and records in batches
    assert "| dynamodb |" in _renders("sweep", results, tmp_path)
