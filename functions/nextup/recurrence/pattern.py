"""A rule made concrete for a start date: every default python-dateutil derives from
DTSTART written out, so the same occurrences follow from any later, in-phase anchor.

python-dateutil (``rrule.__init__``) fills what a rule leaves open from DTSTART:

* with no BYWEEKNO, BYYEARDAY, BYMONTHDAY or BYDAY: YEARLY takes DTSTART's month (unless
  BYMONTH is given) and day of month, MONTHLY its day of month, WEEKLY its weekday;
* BYHOUR from DTSTART for DAILY and coarser, BYMINUTE for HOURLY and coarser, BYSECOND
  always (microseconds are dropped);
* with FREQ=HOURLY a given BYHOUR keeps only hours the interval can reach from DTSTART's
  hour (same for MINUTELY/BYMINUTE); if none is left the rule never occurs.

A `Pattern` holds those resolved parts; it does not depend on where in time the series
starts, only on the parts DTSTART fills, so patterns (and the per-period counts memoised
on them) are shared by every series with the same rule and the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from math import gcd

from nextup.recurrence.errors import NeverOccurs
from nextup.recurrence.model import Freq, Rule

_PATTERNS_PER_RULE = 256
MEMO_LIMIT = 8192


@dataclass(frozen=True, eq=False)
class Pattern:
    rule: Rule
    freq: Freq
    interval: int
    wkst: int
    months: frozenset[int] | None
    weeknos: tuple[int, ...] | None
    yeardays: frozenset[int] | None
    monthdays: frozenset[int] | None
    weekdays: frozenset[int] | None
    nweekdays: tuple[tuple[int, int], ...] | None
    hours: tuple[int, ...] | None  # None: every hour (HOURLY and MINUTELY only)
    minutes: tuple[int, ...] | None  # None: every minute (MINUTELY only)
    seconds: tuple[int, ...]
    setpos: tuple[int, ...] | None
    # The times one period spreads over its days, sorted: (h, m, s) for DAILY and coarser,
    # (m, s) within the hour for HOURLY, (s,) within the minute for MINUTELY.
    times: tuple[tuple[int, ...], ...] = field(init=False)
    # True when days are picked by more than their weekday (month, day of month ...).
    calendar_days: bool = field(init=False)
    # Memoised per-period and per-year counts (see `engines`); cleared when it grows large.
    memo: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.freq <= Freq.DAILY:
            times = [(h, m, s) for h in self.hours for m in self.minutes for s in self.seconds]
        elif self.freq is Freq.HOURLY:
            times = [(m, s) for m in self.minutes for s in self.seconds]
        else:
            times = [(s,) for s in self.seconds]
        object.__setattr__(self, "times", tuple(sorted(times)))
        parts = (self.months, self.weeknos, self.yeardays, self.monthdays, self.nweekdays)
        object.__setattr__(self, "calendar_days", any(part is not None for part in parts))

    def picks(self, n: int) -> range | list[int]:
        """Indexes BYSETPOS keeps out of a period's ``n`` candidates, ascending."""
        if self.setpos is None:
            return range(n)
        found = self.memo.get(("picks", n))
        if found is None:
            chosen = {pos - 1 if pos > 0 else n + pos for pos in self.setpos if -n <= pos <= n}
            found = self.memo[("picks", n)] = sorted(chosen)
        return found

    def kept(self, n: int) -> int:
        """How many of a period's ``n`` candidates BYSETPOS keeps."""
        if self.setpos is None or n == 0:
            return n
        key = ("kept", n)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = len(self.picks(n))
        return found


def _frozen(values: tuple[int, ...] | None) -> frozenset[int] | None:
    return None if values is None else frozenset(values)


def pattern_for(rule: Rule, start: datetime, *, interval: int | None = None) -> Pattern:
    """The pattern of ``rule`` for a series starting at wall time ``start``.

    ``interval`` overrides the rule's (1 gives the phase-free pattern used to check a
    rule without a start date).
    """
    quick = (
        "start",
        start.month,
        start.day,
        start.weekday(),
        start.hour,
        start.minute,
        start.second,
        interval,
    )
    found = rule.patterns.get(quick)
    if found is not None:
        return found
    found = _resolve(rule, start, interval)
    if len(rule.patterns) >= _PATTERNS_PER_RULE:
        rule.patterns.clear()
    rule.patterns[quick] = found
    return found


def _resolve(rule: Rule, start: datetime, interval: int | None) -> Pattern:
    freq = rule.freq
    step = rule.interval if interval is None else interval
    months, monthdays, weekdays = rule.bymonth, rule.bymonthday, rule.byday
    if not rule.has_day_parts:
        if freq is Freq.YEARLY:
            months = months or (start.month,)
            monthdays = (start.day,)
        elif freq is Freq.MONTHLY:
            monthdays = (start.day,)
        elif freq is Freq.WEEKLY:
            weekdays = (start.weekday(),)
    hours = rule.byhour
    if hours is None:
        hours = (start.hour,) if freq <= Freq.DAILY else None
    elif freq is Freq.HOURLY:
        hours = _reachable(hours, start.hour, step, 24, "BYHOUR", "hour")
    minutes = rule.byminute
    if minutes is None:
        minutes = (start.minute,) if freq <= Freq.HOURLY else None
    elif freq is Freq.MINUTELY:
        minutes = _reachable(minutes, start.minute, step, 60, "BYMINUTE", "minute")
    seconds = rule.bysecond or (start.second,)
    key = (step, months, monthdays, weekdays, hours, minutes, seconds)
    found = rule.patterns.get(key)
    if found is None:
        found = rule.patterns[key] = Pattern(
            rule=rule,
            freq=freq,
            interval=step,
            wkst=rule.wkst,
            months=_frozen(months),
            weeknos=rule.byweekno,
            yeardays=_frozen(rule.byyearday),
            monthdays=_frozen(monthdays),
            weekdays=_frozen(weekdays),
            nweekdays=rule.bynday,
            hours=hours,
            minutes=minutes,
            seconds=seconds,
            setpos=rule.bysetpos,
        )
    return found


def _reachable(
    values: tuple[int, ...], start: int, step: int, base: int, name: str, unit: str
) -> tuple[int, ...]:
    # Stepping by `step` from `start` modulo `base` only visits start's residue class
    # modulo gcd(step, base); python-dateutil drops the other values the same way.
    g = gcd(step, base)
    kept = tuple(v for v in values if (v - start) % g == 0)
    if not kept:
        raise NeverOccurs(
            f"rule can never occur from this start: stepping {step} {unit}s at a time from "
            f"{unit} {start} never reaches {name}={','.join(map(str, values))}",
            field="rule",
        )
    return kept
