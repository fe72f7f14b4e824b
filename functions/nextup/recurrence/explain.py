"""Rules back to English, and the next few occurrences: what a user is shown to confirm a
rule before it is saved.

    explain("FREQ=MONTHLY;BYDAY=2TU;BYHOUR=9;BYMINUTE=0", tz="Europe/Berlin")
        -> "every 2nd Tuesday of the month at 09:00, Europe/Berlin"

Every rule the phrasebook (`phrases`) produces is written as a phrase it reads back to the
same rule; any other valid rule gets a plainer rendering that lists its parts in words.
With a start, the parts python-dateutil fills from DTSTART (time of day, the weekday of a
weekly rule, the day of a monthly one ...) are written out as they are for that start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nextup.recurrence.errors import NeverOccurs, RuleError
from nextup.recurrence.mode import Mode
from nextup.recurrence.model import DateValue, Freq, Rule
from nextup.recurrence.pattern import pattern_for
from nextup.recurrence.phrases import DAY_NAMES, MONTH_NAMES, WEEKEND, WORKDAYS, translate
from nextup.recurrence.search import first_after, next_occurrence
from nextup.recurrence.syntax import parse_rule

MAX_UPCOMING = 1000
_UNITS = {
    Freq.YEARLY: "year",
    Freq.MONTHLY: "month",
    Freq.WEEKLY: "week",
    Freq.DAILY: "day",
    Freq.HOURLY: "hour",
    Freq.MINUTELY: "minute",
}
_ORDINAL_WORDS = {-1: "last"}
_TIMES_LISTED = 12  # more combinations than this are described part by part


@dataclass(frozen=True, slots=True)
class _View:
    """A rule's parts as sorted tuples (None: not given), from the rule alone or with
    what a start fills in (`pattern.pattern_for`)."""

    freq: Freq
    interval: int
    months: tuple[int, ...] | None
    weeknos: tuple[int, ...] | None
    yeardays: tuple[int, ...] | None
    monthdays: tuple[int, ...] | None
    weekdays: tuple[int, ...] | None
    nweekdays: tuple[tuple[int, int], ...] | None
    hours: tuple[int, ...] | None
    minutes: tuple[int, ...] | None
    seconds: tuple[int, ...] | None
    setpos: tuple[int, ...] | None
    wkst: int

    @property
    def day_parts(self) -> set[str]:
        names = ("months", "weeknos", "yeardays", "monthdays", "weekdays", "nweekdays")
        return {name for name in names if getattr(self, name) is not None}


def _view(rule: Rule, start: datetime | None) -> _View:
    if start is not None:
        try:
            p = pattern_for(rule, start.replace(microsecond=0))
        except NeverOccurs:
            p = None  # never from this start: describe the rule as written
        if p is not None:
            return _View(
                p.freq,
                p.interval,
                _sorted(p.months),
                p.weeknos,
                _sorted(p.yeardays),
                _sorted(p.monthdays),
                _sorted(p.weekdays),
                p.nweekdays,
                p.hours,
                p.minutes,
                p.seconds,
                p.setpos,
                p.wkst,
            )
    return _View(
        rule.freq,
        rule.interval,
        rule.bymonth,
        rule.byweekno,
        rule.byyearday,
        rule.bymonthday,
        rule.byday,
        rule.bynday,
        rule.byhour,
        rule.byminute,
        rule.bysecond,
        rule.bysetpos,
        rule.wkst,
    )


def _sorted(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(sorted(values))


def explain(rule: str, *, start: datetime | None = None, tz: str | None = None) -> str:
    """``rule`` (RRULE text or a phrase) in English; ``start`` fills in what the rule
    leaves to DTSTART, ``tz`` is named at the end. Raises `RuleError` for an invalid rule."""
    phrase = translate(rule)
    compiled = parse_rule(rule)
    view = _view(compiled, start)
    text = _describe(view) + _times(view) + _end(compiled)
    if phrase is not None and phrase.mode is Mode.COMPLETION:
        text += " after completion"
    text += _dates(compiled)
    return f"{text}, {tz}" if tz else text


def upcoming(
    rule: str, *, start: datetime, count: int, after: datetime | None = None
) -> list[datetime]:
    """The next ``count`` occurrences of ``rule`` started at ``start``: from ``start`` on
    (inclusive), or strictly after ``after``; fewer when the series ends."""
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_UPCOMING:
        raise RuleError(f"count must be an integer from 0 to {MAX_UPCOMING}", field="count")
    found: list[datetime] = []
    if count == 0:
        return found
    at = first_after(rule, start) if after is None else next_occurrence(rule, start, after)
    while at is not None:
        found.append(at)
        if len(found) == count:
            break
        at = next_occurrence(rule, start, at)
    return found


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 11th, 22nd; last, 2nd last."""
    if n < 0:
        return "last" if n == -1 else f"{ordinal(-n)} last"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _days(weekdays: tuple[int, ...]) -> str:
    if weekdays == WORKDAYS:
        return "weekday"
    if weekdays == WEEKEND:
        return "weekend"
    return _and([DAY_NAMES[d].title() for d in weekdays])


def _months(months: tuple[int, ...]) -> str:
    return _and([MONTH_NAMES[m - 1].title() for m in months])


def _ordinals(values: tuple[int, ...], noun: str = "") -> str:
    ordered = sorted(values, key=lambda n: (n < 0, abs(n)))
    text = _and([ordinal(n) for n in ordered])
    # "last" alone is no day: "every last day", while "every 15th" reads as a day.
    needs_noun = noun and any(n < 0 for n in ordered)
    return f"{text} {noun}" if needs_noun else text


def _nth_days(nweekdays: tuple[tuple[int, int], ...]) -> str:
    by_day: dict[int, list[int]] = {}
    for day, n in nweekdays:
        by_day.setdefault(day, []).append(n)
    return _and([f"{_ordinals(tuple(ns))} {DAY_NAMES[day].title()}" for day, ns in by_day.items()])


def _every(v: _View, target: str, unit: str) -> str:
    """``every <target>``, or ``every N <unit>s on the <target>``."""
    if v.interval == 1:
        return f"every {target}"
    article = "the " if target[0].isdigit() or target.startswith("last") else ""
    return f"every {v.interval} {unit}s on {article}{target}"


def _describe(v: _View) -> str:
    """What repeats, as a phrase when the rule has a phrasebook shape, else part by part."""
    unit = _UNITS[v.freq]
    parts = v.day_parts
    # BYSETPOS picks among every (day, time) pair: "the last weekday" only with one time.
    one_time = all(part is None or len(part) == 1 for part in (v.hours, v.minutes, v.seconds))
    if not parts and v.setpos is None:
        return f"every {unit}" if v.interval == 1 else f"every {v.interval} {unit}s"
    # Which week a day falls in depends on WKST once weeks are skipped: say it (generic).
    steady_weeks = v.interval == 1 or v.wkst == 0
    if v.freq is Freq.WEEKLY and parts == {"weekdays"} and v.setpos is None and steady_weeks:
        days = _days(v.weekdays)
        if v.interval == 2:
            return f"every other {days}"
        return f"every {days}" if v.interval == 1 else f"every {v.interval} weeks on {days}"
    if v.freq in (Freq.MONTHLY, Freq.YEARLY):
        months = v.months if v.freq is Freq.YEARLY else None
        scope = f"of {_months(months)}" if months else f"of the {unit}"
        rest = parts - {"months"} if months else parts
        target = None
        if rest == {"monthdays"} and v.setpos is None and (months or v.freq is Freq.MONTHLY):
            if months and len(months) == 1 and len(v.monthdays) == 1 and v.monthdays[0] > 0:
                target = f"{_months(months)} {v.monthdays[0]}"
            else:
                target = f"{_ordinals(v.monthdays, 'day')} {scope}"
        elif rest == {"nweekdays"} and v.setpos is None:
            target = f"{_nth_days(v.nweekdays)} {scope}"
        elif rest == {"yeardays"} and v.setpos is None and not months:
            target = f"{_ordinals(v.yeardays)} day of the year"
        elif rest == {"weekdays"} and v.setpos and v.weekdays in (WORKDAYS, WEEKEND) and one_time:
            target = f"{_ordinals(v.setpos)} {_days(v.weekdays)} {scope}"
        elif not rest and months and v.setpos is None:
            target = _months(months)
        if target is not None:
            return _every(v, target, unit)
    return _generic(v)


def _generic(v: _View) -> str:
    unit = _UNITS[v.freq]
    text = f"every {unit}" if v.interval == 1 else f"every {v.interval} {unit}s"
    if v.months:
        text += f" in {_months(v.months)}"
    if v.weeknos:
        text += f" in the {_ordinals(v.weeknos)} week of the year"
    if v.yeardays:
        text += f" on the {_ordinals(v.yeardays)} day of the year"
    if v.monthdays:
        text += f" on the {_ordinals(v.monthdays)} day of the month"
    if v.weekdays:
        text += f" on {_and([DAY_NAMES[d].title() for d in v.weekdays])}"
    if v.nweekdays:
        within = "month" if v.freq is Freq.MONTHLY or v.months else "year"
        text += f" on the {_nth_days(v.nweekdays)} of the {within}"
    if v.setpos:
        text += f", only the {_ordinals(v.setpos)} of each {unit}'s matches"
    if v.wkst and (v.weeknos or (v.freq is Freq.WEEKLY and v.interval > 1)):
        text += f", weeks starting on {DAY_NAMES[v.wkst].title()}"
    return text


def _time_list(v: _View) -> list[str] | None:
    """Every time of day as HH:MM[:SS], when hours and minutes are both given and few."""
    if v.hours is None or v.minutes is None:
        return None
    seconds = v.seconds or (0,)
    if len(v.hours) * len(v.minutes) * len(seconds) > _TIMES_LISTED:
        return None
    shown = "{:02d}:{:02d}" if seconds == (0,) else "{:02d}:{:02d}:{:02d}"
    return [shown.format(h, m, s) for h in v.hours for m in v.minutes for s in seconds]


def _times(v: _View) -> str:
    listed = _time_list(v)
    if listed is not None:
        return f" at {_and(listed)}"
    parts = []
    for name, values in (("hour", v.hours), ("minute", v.minutes), ("second", v.seconds)):
        if values is not None and not (name == "second" and values == (0,)):
            parts.append(f"{name} {_and([str(n) for n in values])}")
    return f" at {', '.join(parts)}" if parts else ""


def _date(value: DateValue) -> str:
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if value.time is not None:
        text += " {:02d}:{:02d}:{:02d}".format(*value.time)
    if value.zone is not None:
        text += f" {value.zone}"
    return text


def _end(rule: Rule) -> str:
    if rule.until is not None:
        return f" until {_date(rule.until)}"
    if rule.count is not None:
        return f" for {rule.count} times"
    return ""


def _dates(rule: Rule) -> str:
    text = ""
    if rule.exdates:
        text += f", except {_and([_date(d) for d in rule.exdates])}"
    if rule.rdates:
        text += f", also {_and([_date(d) for d in rule.rdates])}"
    return text
