"""The two ways a todo app repeats a task, on top of `next_occurrence`."""

from __future__ import annotations

from datetime import datetime

from nextup.recurrence.errors import RuleError
from nextup.recurrence.mode import Mode
from nextup.recurrence.search import aware, next_after
from nextup.recurrence.syntax import parse_rule


def next_due(
    rule: str,
    *,
    series_start: datetime,
    due_at: datetime,
    completed_at: datetime,
    mode: Mode,
    until: datetime | None = None,
    count: int | None = None,
    index: int = 0,
) -> datetime | None:
    """When the task after the one due at ``due_at`` (completed at ``completed_at``) is
    due, in ``series_start``'s zone, or None when the series is over.

    * ``schedule``: the next occurrence of the series anchored at ``series_start``
      strictly after ``max(due_at, completed_at)``; ``count`` limits the occurrences
      counted from ``series_start`` like COUNT (the smaller of the two wins).
    * ``completion``: the rule restarted at ``completed_at`` (read in series_start's
      zone), its first occurrence strictly after ``completed_at``; ``count`` (or the
      rule's COUNT, the smaller) caps the number of tasks: task ``index`` (0-based) is the
      last when ``index + 1 >= count``.

    ``until`` (inclusive, aware) ends the series in both modes, as does the rule's UNTIL;
    the earlier wins. It applies to whatever would come next, RDATE values included.
    """
    compiled = parse_rule(rule)
    mode = _mode(mode)
    tz = aware(series_start, "series_start")
    aware(due_at, "due_at")
    aware(completed_at, "completed_at")
    if until is not None:
        aware(until, "until")
    limit = _merge_count(compiled.count, count)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise RuleError("index must be a non-negative integer", field="index")
    if mode is Mode.SCHEDULE:
        found = next_after(compiled, series_start, max(due_at, completed_at), limit)
    else:
        if limit is not None and index + 1 >= limit:
            return None
        found = next_after(compiled, completed_at.astimezone(tz), completed_at, None)
    if found is not None and until is not None and found > until:
        return None
    return found


def _mode(mode: object) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise RuleError(
            f"mode must be 'schedule' or 'completion', not {mode!r}", field="mode"
        ) from None


def _merge_count(rule_count: int | None, count: int | None) -> int | None:
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise RuleError("count must be a positive integer", field="count")
    given = [c for c in (rule_count, count) if c is not None]
    return min(given) if given else None
