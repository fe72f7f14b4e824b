"""Whether a rule can ever occur, decided without a start date.

python-dateutil has no such check: a rule that never occurs (``BYMONTH=2;BYMONTHDAY=30``)
makes it walk period by period up to the year 9999 before giving up, which takes from
a fraction of a second to minutes. Here the rule is tried, ignoring its interval, on
the 28 consecutive years 2001-2028: between them they have every combination of year
length, weekday of 1 January and previous year's length, and nothing else changes which
days a period keeps. Defaults that DTSTART fills in are taken from 2001-01-01 00:00, a
start that fits every month; whether the actual start's defaults and interval phase can
occur is checked again once the start is known (`search.Series.ensure_occurs`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from nextup.recurrence.calendar_plans import YearPlans
from nextup.recurrence.errors import NeverOccurs
from nextup.recurrence.expand import month_count, year_doys
from nextup.recurrence.model import WEEKDAY_NAMES, Freq, Rule
from nextup.recurrence.pattern import pattern_for
from nextup.recurrence.timeline import first_period_of_year

_PROBE_START = datetime(2001, 1, 1)  # a Monday, the first of a month
_PROBE_YEARS = range(2001, 2029)


def check_rule(rule: Rule) -> None:
    """Raise `RuleError` if ``rule`` can never occur, naming the parts that clash."""
    if _ever(rule):
        return
    if rule.bysetpos is not None and _ever(replace(rule, bysetpos=None, patterns={})):
        raise NeverOccurs(
            f"rule can never occur: no period has as many occurrences as "
            f"BYSETPOS={','.join(map(str, rule.bysetpos))} asks for"
        )
    raise NeverOccurs(f"rule can never occur: no date matches {' with '.join(_day_parts(rule))}")


def _ever(rule: Rule) -> bool:
    pattern = pattern_for(rule, _PROBE_START, interval=1)
    if pattern.freq is Freq.WEEKLY and pattern.months is None:
        return pattern.kept(len(pattern.weekdays) * len(pattern.times)) > 0
    if pattern.freq is Freq.MONTHLY:  # month by month: usually the first one answers
        return any(
            month_count(pattern, year, month) for year in _PROBE_YEARS for month in range(1, 13)
        )
    if pattern.freq in (Freq.YEARLY, Freq.WEEKLY):
        plans = YearPlans(pattern, first_period_of_year(pattern.freq, pattern.wkst, 2001))
        end = first_period_of_year(pattern.freq, pattern.wkst, _PROBE_YEARS[-1] + 1)
        return plans.next_nonempty(plans.p0, end) is not None
    if not pattern.kept(len(pattern.times)):
        return False
    if not pattern.calendar_days:  # days picked by weekday alone: some day always fits
        return True
    return any(year_doys(pattern, year) for year in _PROBE_YEARS)


def _day_parts(rule: Rule) -> list[str]:
    parts = []
    for name in ("bymonth", "byweekno", "byyearday", "bymonthday"):
        values = getattr(rule, name)
        if values is not None:
            parts.append(f"{name.upper()}={','.join(map(str, values))}")
    days = [WEEKDAY_NAMES[d] for d in rule.byday or ()]
    days += [f"{n}{WEEKDAY_NAMES[d]}" for d, n in rule.bynday or ()]
    if days:
        parts.append(f"BYDAY={','.join(days)}")
    return parts or [rule.rrule_text()]
