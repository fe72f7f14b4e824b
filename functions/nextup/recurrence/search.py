"""The next occurrence after an instant, at a cost that does not grow with the series' age.

python-dateutil's ``after()`` walks every occurrence from DTSTART. Here generation starts
at an *anchor* instead: the series' last period (in phase with its interval) starting at
or before the earliest wall time an occurrence after ``after`` could have. Nothing before
the anchor can be the answer, and because every default DTSTART implies is explicit
(`pattern`) and a period's occurrences depend only on the period (BYSETPOS picks within a
whole period), the anchor's period and those after it hold exactly the occurrences the
series has there. With COUNT, the occurrences before the anchor are counted without
walking them (`engines`) and only what is left is generated.

Occurrences are generated period by period (`expand.occurrences`), skipping empty periods,
with python-dateutil's semantics: periods step in naive wall-clock time, each occurrence
is a wall time with fold=0 (in a DST gap it reads with the offset before the gap), UNTIL
and ``after`` are compared as instants, and the answer is the first occurrence, in that
wall-clock order, strictly after ``after``. EXDATE/RDATE are merged by dateutil's own
``rruleset``. The differential tests hold all of this to ``rrulestr(...).after()``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from dateutil.rrule import rruleset

from nextup.recurrence import syntax
from nextup.recurrence.daymath import jan1
from nextup.recurrence.engines import Engine, engine_for
from nextup.recurrence.errors import NeverOccurs, RuleError
from nextup.recurrence.expand import first_period_count, occurrences, remember
from nextup.recurrence.limits import FEASIBILITY_YEARS, LAST_YEAR, MAX_YEAR, MIN_YEAR
from nextup.recurrence.model import Freq, Rule, zone
from nextup.recurrence.pattern import Pattern, pattern_for
from nextup.recurrence.syntax import parse_rule
from nextup.recurrence.timeline import first_period_of_year, floor_in_phase, period_of

_PROBES = tuple(timedelta(hours=h) for h in (-49, -24, 0, 1, 25, 49))
_HOURLY_PROBES = tuple(timedelta(hours=h) for h in range(-50, 51))
_END = datetime(LAST_YEAR, 12, 31, 23, 59)
_CACHE_LIMIT = 4096


def aware(value: object, name: str) -> tzinfo:
    """The tzinfo of an aware datetime within the accepted years; RuleError otherwise."""
    if not isinstance(value, datetime):
        raise RuleError(f"{name} must be a datetime", field=name)
    if value.tzinfo is None or value.utcoffset() is None:
        raise RuleError(f"{name} must be timezone-aware", field=name)
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise RuleError(f"{name} must lie between the years {MIN_YEAR} and {MAX_YEAR}", field=name)
    return value.tzinfo


class InstantBound:
    """Answers "is this occurrence strictly after the instant?" for occurrences in the
    series' zone, mostly by a cheap wall-clock comparison.

    Comparing datetimes in different zones costs a UTC conversion each (microseconds with
    zoneinfo). Walls below ``lo`` are never after the instant, walls above ``hi`` always
    are; only walls in between (near an offset change) are compared as instants. ``lo``
    and ``hi`` carry the series' tzinfo, so comparing with them compares wall clocks.
    """

    __slots__ = ("hi", "instant", "lo")

    def __init__(self, instant: datetime, tz: tzinfo) -> None:
        self.instant = instant
        self.lo, self.hi = wall_window(instant, tz)

    def passed(self, occurrence: datetime) -> bool:
        if occurrence < self.lo:
            return False
        if occurrence > self.hi:
            return True
        return occurrence > self.instant


def wall_window(instant: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """Walls ``(lo, hi)`` in ``tz``: an occurrence at a wall before ``lo`` is at or before
    ``instant``, one at a wall after ``hi`` is strictly after it.

    Occurrences read their wall with fold=0 (a gap wall takes the offset before the gap),
    so just after a forward jump some walls earlier than the instant's own are later
    instants; ``lo`` steps back for them. Zones are assumed not to change offset twice
    within two days.
    """
    local = instant.astimezone(tz)
    if isinstance(tz, timezone) or _steady(instant, tz):
        return local, local
    # Near an offset change: sample hourly, and test walls one by one (rare).
    offset = local.utcoffset()
    offsets = {(instant + d).astimezone(tz).utcoffset() for d in _HOURLY_PROBES}
    offsets.add(offset)
    utc_wall = instant.astimezone(UTC).replace(tzinfo=None)
    wall = local.replace(tzinfo=None, fold=0)
    lo = wall
    for other in offsets:
        candidate = utc_wall + other
        if other < offset and candidate.replace(tzinfo=tz).utcoffset() == other:
            lo = min(lo, candidate)
    return lo.replace(tzinfo=tz), max(wall, utc_wall + max(offsets)).replace(tzinfo=tz)


class _SameZone:
    """A cache key for a tzinfo that cannot be hashed (python-dateutil's ``tzfile``,
    ``tzutc``, ``tzoffset``, ``tzlocal`` define ``__eq__`` without ``__hash__``): equal only
    to the very same object. It holds the zone, so the id cannot be reused by another
    object while the key sits in a cache."""

    __slots__ = ("tz",)

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def __hash__(self) -> int:
        return id(self.tz)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameZone) and other.tz is self.tz


def zone_key(tz: tzinfo) -> Hashable:
    """``tz`` itself where it hashes (zoneinfo, datetime.timezone), else a key by identity:
    dateutil's ``gettz`` and ``tzoffset`` hand out one instance per zone, so identity
    still finds the cached series; a zone built afresh each call merely misses."""
    try:
        hash(tz)
    except TypeError:
        return _SameZone(tz)
    return tz


_steady_cache: dict[tuple[Hashable, int], bool] = {}


def _steady(instant: datetime, tz: tzinfo) -> bool:
    """Whether ``tz`` keeps one UTC offset from two days before ``instant`` to two days
    after (answered per hour of UTC time, cached)."""
    hour_index = int(instant.timestamp()) // 3600
    key = (zone_key(tz), hour_index)
    found = _steady_cache.get(key)
    if found is None:
        hour = datetime.fromtimestamp(hour_index * 3600, UTC)
        offsets = {(hour + d).astimezone(tz).utcoffset() for d in _PROBES}
        found = len(offsets) == 1
        if len(_steady_cache) >= _CACHE_LIMIT:
            _steady_cache.clear()
        _steady_cache[key] = found
    return found


@dataclass(frozen=True, slots=True)
class Series:
    """A rule started at a given wall time in a given zone."""

    rule: Rule
    pattern: Pattern
    tz: tzinfo
    start: datetime  # aware, microseconds dropped as dateutil does
    clock: tuple[int, int, int, int, int, int]  # the start's wall clock, for memo keys
    p0: int  # the first period's index (see `timeline`)
    engine: Engine

    @classmethod
    def of(cls, rule: Rule, dtstart: datetime) -> Series:
        tz = aware(dtstart, "dtstart")
        key = (rule, dtstart, zone_key(tz))
        found = _series_cache.get(key)
        if found is None:
            start = dtstart.replace(microsecond=0) if dtstart.microsecond else dtstart
            pattern = pattern_for(rule, start)
            p0 = period_of(rule.freq, rule.wkst, start)
            clock = (start.year, start.month, start.day, start.hour, start.minute, start.second)
            engine = remember(pattern, ("engine", p0), lambda: engine_for(pattern, p0))
            found = cls(rule, pattern, tz, start, clock, p0, engine)
            if len(_series_cache) >= _CACHE_LIMIT:
                _series_cache.clear()
            _series_cache[key] = found
        return found

    def first_count(self) -> int:
        return remember(
            self.pattern,
            ("first", self.clock),
            lambda: first_period_count(self.pattern, self.start),
        )

    def limit(self, year: int) -> int:
        """Index of the first period starting in ``year`` (capped past dateutil's last)."""
        return _limit(self.rule.freq, self.rule.wkst, min(year, LAST_YEAR + 1))

    def ensure_occurs(self) -> None:
        """Refuse a rule that, from this start, has no occurrence for centuries."""

        def check() -> bool:
            horizon = self.limit(self.start.year + FEASIBILITY_YEARS)
            if self.first_count() or self.engine.next_nonempty(self.p0 + 1, horizon) is not None:
                return True
            raise NeverOccurs(
                f"rule can never occur from a start at {self.start:%Y-%m-%d %H:%M:%S}: "
                f"{self.rule.rrule_text()} has no occurrence within {FEASIBILITY_YEARS} years"
            )

        remember(self.pattern, ("occurs", self.clock), check)


@lru_cache(maxsize=256)
def _limit(freq: Freq, wkst: int, year: int) -> int:
    if year > LAST_YEAR:
        return period_of(freq, wkst, _END) + 1
    return first_period_of_year(freq, wkst, year)


# Recently used series, by (rule, dtstart, zone key): a series' pattern, engine and first
# period are reused by every call about it.
_series_cache: dict[tuple[Rule, datetime, Hashable], Series] = {}


def clear_caches() -> None:
    """Forget every compiled rule, series and memoised count (for cold-start benchmarks)."""
    syntax._compile.cache_clear()
    _series_cache.clear()
    _steady_cache.clear()
    _limit.cache_clear()
    jan1.cache_clear()
    zone.cache_clear()


def next_occurrence(rule: str, dtstart: datetime, after: datetime) -> datetime | None:
    """The first occurrence of ``rule`` started at ``dtstart`` strictly after the instant
    ``after``, in dtstart's zone, or None once the series has ended.

    ``rule`` is rule text (see `parse_rule`); ``dtstart`` and ``after`` must be aware.
    Raises `RuleError` for an invalid rule, or one that can never occur from ``dtstart``.
    """
    compiled = parse_rule(rule)
    aware(dtstart, "dtstart")
    aware(after, "after")
    return next_after(compiled, dtstart, after, compiled.count)


def first_after(rule: str, dtstart: datetime) -> datetime | None:
    """The first occurrence of ``rule`` started at ``dtstart`` (at or after dtstart), or
    None when, from this start, it has none: the series ends (UNTIL, COUNT with EXDATE)
    before it first occurs, or no period within `FEASIBILITY_YEARS` has an occurrence.

    For refusing, at validation time, a rule that is valid but never occurs from the
    task's own start. As cheap as `next_occurrence`; raises `RuleError` only for an
    invalid rule or ``dtstart``.
    """
    compiled = parse_rule(rule)
    aware(dtstart, "dtstart")
    # Occurrences fall on whole seconds from dtstart (its microseconds dropped), so the
    # first one strictly after the second before is the first at or after dtstart.
    before = dtstart.replace(microsecond=0) - timedelta(seconds=1)
    try:
        return next_after(compiled, dtstart, before, compiled.count)
    except NeverOccurs:
        return None


def next_after(
    rule: Rule, dtstart: datetime, after: datetime, count: int | None
) -> datetime | None:
    """First occurrence of ``rule`` from ``dtstart`` strictly after ``after``, or None;
    ``count`` replaces the rule's COUNT (None: no COUNT). ``after`` must be aware (its
    year is checked by the public callers)."""
    try:
        return _next_after(rule, dtstart, after, count)
    except RuleError:
        raise
    except (ValueError, OverflowError, IndexError, TypeError) as exc:
        # Validation should leave dateutil nothing to object to; never leak its errors.
        raise RuleError(f"rule could not be evaluated: {exc}") from exc


def _next_after(
    rule: Rule, dtstart: datetime, after: datetime, count: int | None
) -> datetime | None:
    series = Series.of(rule, dtstart)
    series.ensure_occurs()
    tz = series.tz
    instant = after.astimezone(UTC)
    until = None
    if rule.until is not None:
        until = rule.until.resolve(tz, end_of_day=True).astimezone(UTC)
        if until <= instant and not rule.is_set:
            return None
    bound = InstantBound(instant, tz)
    start_p, remaining = _anchor(series, bound.lo, count)
    if remaining is not None and remaining <= 0 and not rule.is_set:
        return None
    earliest = bound.lo
    skip = None
    if until is None or until > instant:  # then nothing skipped can be after UNTIL
        skip = (earliest.toordinal(), earliest.hour, earliest.minute, earliest.second)
    stream = _occurrences(series, start_p, remaining, until and InstantBound(until, tz), skip)
    if rule.is_set:
        found = _set_after(series, stream, instant)
    else:
        found = next((x for x in stream if bound.passed(x)), None)
    return None if found is None else found.astimezone(UTC).astimezone(tz)


def _anchor(series: Series, earliest: datetime, count: int | None) -> tuple[int, int | None]:
    """(period to start generating from, occurrences left then, or None without COUNT).

    ``earliest`` is the earliest wall time an answer may have: generation starts at the
    last in-phase period starting at or before it, or at the series' own first period.
    """
    pattern = series.pattern
    p = period_of(pattern.freq, pattern.wkst, earliest)
    anchor = floor_in_phase(p, series.p0, pattern.interval)
    if anchor <= series.p0:
        return series.p0, count
    if count is None:
        return anchor, None
    before = series.first_count() + series.engine.count(series.p0 + 1, anchor)
    return anchor, count - before


def _occurrences(
    series: Series,
    p: int,
    remaining: int | None,
    until: InstantBound | None,
    skip_before: tuple[int, int, int, int] | None = None,
):
    """The series' occurrences from period ``p`` on, in python-dateutil's order: period
    by period, each period's occurrences ascending; stops after ``remaining`` (COUNT)
    or at the first occurrence after UNTIL. Empty periods are skipped by the engine.

    ``skip_before`` (ordinal, h, m, s): leave out, in the first period, occurrences with
    an earlier wall time; they still count towards COUNT. Only for callers that would
    discard them anyway and know none of them can be after UNTIL.
    """
    pattern, engine, tz = series.pattern, series.engine, series.tz
    limit = series.limit(LAST_YEAR + 1)
    while remaining is None or remaining > 0:
        if p == series.p0:
            found = occurrences(pattern, p, series.start)
        else:
            p = engine.next_nonempty(p, limit)
            if p is None:
                return
            found = occurrences(pattern, p)
        if remaining is not None:
            found = found[:remaining]
            remaining -= len(found)
        if skip_before is not None:
            found = found[bisect_left(found, skip_before) :]
            skip_before = None
        for ordinal, hour, minute, second in found:
            day = date.fromordinal(ordinal)
            # A wall time with fold=0, as dateutil builds it: in a DST gap it reads with
            # the offset before the gap, when ambiguous as its first occurrence.
            occurrence = datetime(day.year, day.month, day.day, hour, minute, second, 0, tz)
            if until is not None and until.passed(occurrence):
                return
            yield occurrence
        p += 1


def _set_after(series: Series, stream, instant: datetime) -> datetime | None:
    """Merge with RDATE/EXDATE by python-dateutil's own rruleset, which iterates the
    stream like any rrule; floating values are read in the series' zone."""
    rule, tz = series.rule, series.tz
    rset = rruleset()
    rset.rrule(stream)
    for value in rule.rdates:
        rset.rdate(value.resolve(tz))
    for value in rule.exdates:
        rset.exdate(value.resolve(tz))
    return rset.after(instant)
