"""Next occurrence vs series age: `nextup.recurrence.next_occurrence` against the naive
``rrulestr(rule, dtstart=start).after(now)``, which walks every occurrence since the start.

For each rule and age, three timings of the same question (the first occurrence after the
run's "now", for a series started that long ago at 09:00 Europe/Berlin):

* ours warm: the same call repeated (rule compiled, series and per-year counts cached);
* ours cold: every cache cleared before each call (`search.clear_caches`): parsing,
  patterns, engines and memoised counts all start from nothing;
* naive: python-dateutil from scratch each time; a call over 0.5 s is run only once, and
  one estimated to exceed the budget (from the younger ages' cost per occurrence) is not
  run at all and says so.

The answers are compared too: a benchmark row whose answers differ is flagged.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from bench import describe, machine
from nextup.recurrence import next_occurrence
from nextup.recurrence.phrases import translate
from nextup.recurrence.search import clear_caches

ZONE = "Europe/Berlin"
RULES = [
    ("DAILY", "FREQ=DAILY"),
    ("HOURLY", "FREQ=HOURLY"),
    ("MINUTELY", "FREQ=MINUTELY"),
    ("BYDAY/BYSETPOS", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"),
]
# What people type, as the phrasebook reads it (`every last workday` is the rule above).
PHRASES = [
    "every 2nd tuesday of the month at 9:30",
    "every 4th thursday of november",
    "every mon, wed and fri at 18:00",
]
RULES += [(f'"{phrase}"', translate(phrase).rule) for phrase in PHRASES]
COUNT = ";COUNT=1000000"
AGES = [
    ("1 day", 1),
    ("1 month", 30),
    ("1 year", 365),
    ("3 years", 1096),
    ("10 years", 3653),
    ("20 years", 7305),
]
QUICK_AGES = AGES[:2]
TARGET_US = 100.0

# Repetitions: (warm calls, cold calls, naive calls, naive time budget per cell in seconds)
FULL = (400, 60, 15, 60.0)
QUICK = (20, 3, 2, 0.5)
SLOW_NAIVE = 0.5  # seconds: above this a naive call is run once


def _timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered) * 1e6, 1),
        "p90_us": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1e6, 1),
        "runs": len(ordered),
    }


def _ours(
    rule: str, start: datetime, now: datetime, warm: int, cold: int
) -> tuple[dict, dict, object]:
    answer = next_occurrence(rule, start, now)
    warm_times = [_timed(lambda: next_occurrence(rule, start, now))[0] for _ in range(warm)]
    cold_times = []
    for _ in range(cold):
        clear_caches()
        cold_times.append(_timed(lambda: next_occurrence(rule, start, now))[0])
    return _stats(warm_times), _stats(cold_times), answer


def _naive(
    rule: str, start: datetime, now: datetime, runs: int, budget: float
) -> tuple[dict, object]:
    spent, answer = _timed(lambda: rrulestr(rule, dtstart=start).after(now))
    times = [spent]
    while spent < SLOW_NAIVE and len(times) < runs and sum(times) < budget:
        times.append(_timed(lambda: rrulestr(rule, dtstart=start).after(now))[0])
    return _stats(times), answer


def _occurrences_between(rule: str, start: datetime, now: datetime) -> float:
    """Rough count of occurrences dateutil walks (for estimating skipped naive calls)."""
    seconds = (now - start).total_seconds()
    per = {
        "MINUTELY": 60,
        "HOURLY": 3600,
        "DAILY": 86400,
        "WEEKLY": 86400 * 7,
        "MONTHLY": 86400 * 30.4,
        "YEARLY": 86400 * 365.25,
    }
    walked = seconds / per[rule.split(";")[0].split("=")[1]]
    return min(walked, 1_000_000) if "COUNT=" in rule else walked


def run(quick: bool = False) -> dict:
    """Time every rule at every age; returns JSON-able results (writes nothing)."""
    warm, cold, naive_runs, budget = QUICK if quick else FULL
    zone = ZoneInfo(ZONE)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for label, base in RULES:
        for rule in (base, base + COUNT):
            cost_per_occurrence = None  # seconds, from the last naive call measured
            for age_label, days in QUICK_AGES if quick else AGES:
                start = (now - timedelta(days=days)).astimezone(zone)
                start = start.replace(hour=9, minute=0, second=0, microsecond=0)
                ours_warm, ours_cold, ours_answer = _ours(rule, start, now, warm, cold)
                walked = _occurrences_between(rule, start, now)
                row = {
                    "rule": rule,
                    "label": label + (" +COUNT" if rule != base else ""),
                    "age": age_label,
                    "age_days": days,
                    "ours_warm": ours_warm,
                    "ours_cold": ours_cold,
                    "answer": None if ours_answer is None else ours_answer.isoformat(),
                }
                estimate = None if cost_per_occurrence is None else cost_per_occurrence * walked
                if estimate is not None and estimate > budget:
                    row["naive"] = None
                    row["naive_estimate_s"] = round(estimate, 1)
                else:
                    naive, naive_answer = _naive(rule, start, now, naive_runs, budget)
                    row["naive"] = naive
                    row["agree"] = _same(ours_answer, naive_answer)
                    cost_per_occurrence = naive["median_us"] / 1e6 / max(walked, 1)
                    row["ratio"] = round(naive["median_us"] / ours_warm["median_us"], 1)
                rows.append(row)
    return {"machine": machine(), "zone": ZONE, "quick": quick, "rows": rows}


def _same(ours, naive) -> bool:
    if ours is None or naive is None:
        return ours is None and naive is None
    return ours.astimezone(UTC) == naive.astimezone(UTC)


def _us(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:,.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:,.1f} ms"
    return f"{value:,.0f} µs"


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    worst = max(results["rows"], key=lambda row: row["ours_warm"]["median_us"])
    median = worst["ours_warm"]["median_us"]
    measured = f"slowest {_us(median)} (`{worst['label']}`, {worst['age']})"
    return [(f"recurrence ≤ {TARGET_US:.0f} µs median", measured, median <= TARGET_US)]


def render(results: dict) -> str:
    rows = results["rows"]
    worst = max(row["ours_warm"]["median_us"] for row in rows)
    lines = [
        "## recurrence: next occurrence vs series age",
        "",
        f"Machine: {describe(results['machine'])}{' (quick run)' if results.get('quick') else ''}.",
        "",
        "The first occurrence after the run's time of a series started that long ago at 09:00 "
        f"{results['zone']}. *Ours* is `nextup.recurrence.next_occurrence(rule, start, now)`: "
        "*warm* repeats the call (rule compiled and counts memoised), *cold* clears every "
        "cache before each call. *Naive* is `rrulestr(rule, dtstart=start).after(now)`, "
        "which walks every occurrence since the start. Medians and 90th percentiles; the "
        "ratio is naive / ours warm. `COUNT=1000000` ends a minutely series after about "
        "1.9 years, so from there on both answer None (ours after counting, naive after "
        "walking a million occurrences).",
        "",
        f"Target: ours at most {TARGET_US:.0f} µs median at every age. Slowest warm median "
        f"here: {_us(worst)} ({'met' if worst <= TARGET_US else 'NOT met'}).",
        "",
        "| rule | age | ours warm (p90) | ours cold (p90) | naive (p90) | naive runs "
        "| naive / ours |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        warm, cold, naive = row["ours_warm"], row["ours_cold"], row["naive"]
        if naive is None:
            naive_cell = f"not run (≈ {row['naive_estimate_s']:,.0f} s estimated)"
            runs, ratio = (
                "0",
                "≈ {:,.0f}x".format(row["naive_estimate_s"] * 1e6 / warm["median_us"]),
            )
        else:
            naive_cell = f"{_us(naive['median_us'])} ({_us(naive['p90_us'])})"
            runs = str(naive["runs"]) + (" (slow: once)" if naive["runs"] == 1 else "")
            ratio = f"{row['ratio']:,.0f}x"
            if not row.get("agree", True):
                ratio += " **answers differ**"
        ours = f"{_us(warm['median_us'])} ({_us(warm['p90_us'])})"
        first = f"{_us(cold['median_us'])} ({_us(cold['p90_us'])})"
        lines.append(
            f"| `{row['label']}` | {row['age']} | {ours} | {first} | {naive_cell} | {runs} "
            f"| {ratio} |"
        )
    if results.get("figure"):
        lines += ["", f"![time vs series age, log scale]({results['figure']})"]
    lines.append("")
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    """Draw time vs age on a log scale (skipped when matplotlib is missing)."""
    try:  # imported here: matplotlib is optional (the dev extra), and slow to import
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return []
    figure, axes = pyplot.subplots(figsize=(8, 5))
    for label in dict.fromkeys(row["label"] for row in results["rows"]):
        rows = [row for row in results["rows"] if row["label"] == label]
        ages = [row["age_days"] for row in rows]
        (line,) = axes.plot(
            ages, [row["ours_warm"]["median_us"] for row in rows], marker="o", label=f"ours {label}"
        )
        measured = [row for row in rows if row["naive"] is not None]
        axes.plot(
            [row["age_days"] for row in measured],
            [row["naive"]["median_us"] for row in measured],
            linestyle="--",
            marker="x",
            color=line.get_color(),
            label=f"naive {label}",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("series age (days)")
    axes.set_ylabel("median time per call (µs)")
    axes.axhline(TARGET_US, color="grey", linewidth=0.8)
    axes.set_title("Next occurrence: ours (warm) vs rrulestr(...).after(now)")
    axes.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    path = docs / "benchmarks-recurrence.png"
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    results["figure"] = path.name
    return [path]
