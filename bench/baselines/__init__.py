"""Baselines the benchmarks compare against, written here:

- `floor`: a functions-framework ASGI CloudEvent function that does nothing, served exactly
  like ours: the least any function on this framework costs;
- `seed_style`: the seed's recurring-task service (its Example 1, with Example 4's
  idempotency) as a FastAPI app with httpx, served by uvicorn: what a user following the
  seed would run for the same work as schedule-next.

The naive recurrence baseline (`rrulestr(rule, dtstart=start).after(now)`) lives in
`bench.recurrence`.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOR = HERE / "floor.py"
