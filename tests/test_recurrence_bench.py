"""The recurrence benchmark runs on a tiny input and renders its table (writing nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` lives at the repository root, beside `tests`
    sys.path.insert(0, str(ROOT))

from bench import recurrence  # noqa: E402
from bench.__main__ import BENCHMARKS, render_document  # noqa: E402


def test_quick_run(tmp_path: Path) -> None:
    before = {path: path.stat().st_mtime for path in (ROOT / "docs").glob("*")}
    results = recurrence.run(quick=True)
    assert {"machine", "rows", "zone", "quick"} <= results.keys()
    assert results["quick"] is True
    labels = {row["label"] for row in results["rows"]}
    assert {"DAILY", "HOURLY", "MINUTELY", "BYDAY/BYSETPOS", "DAILY +COUNT"} <= labels
    for row in results["rows"]:
        assert {"rule", "age", "ours_warm", "ours_cold", "naive"} <= row.keys()
        assert {"median_us", "p90_us", "runs"} <= row["ours_warm"].keys()
        if row["naive"] is None:  # estimated over the quick budget: not run
            assert row["naive_estimate_s"] > 0
        else:
            assert row["agree"] is True  # ours and dateutil gave the same instant
    assert sum(row["naive"] is not None for row in results["rows"]) >= len(results["rows"]) // 2
    text = render_document({"recurrence": results})
    assert "## recurrence" in text and "| `DAILY` | 1 day |" in text
    assert {path: path.stat().st_mtime for path in (ROOT / "docs").glob("*")} == before
    assert "recurrence" in BENCHMARKS
