"""The compiled form of a rule: what the parser produces and everything else consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo


class Freq(IntEnum):
    """RRULE frequencies, numbered like python-dateutil's constants (coarsest first)."""

    YEARLY = 0
    MONTHLY = 1
    WEEKLY = 2
    DAILY = 3
    HOURLY = 4
    MINUTELY = 5


WEEKDAY_NAMES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class DateValue:
    """A DATE or DATE-TIME from rule text, resolved to an aware datetime only once the
    series' zone is known: ``zone`` is ``"UTC"`` for a trailing Z, an IANA name for TZID,
    or None for a floating value, which is read in the series' own zone."""

    year: int
    month: int
    day: int
    time: tuple[int, int, int] | None  # None: a date without time
    zone: str | None = None

    def resolve(self, tz: tzinfo, *, end_of_day: bool = False) -> datetime:
        if self.time is None:
            # A bare date means midnight, or the whole day when it ends a series.
            h, m, s = (23, 59, 59) if end_of_day else (0, 0, 0)
        else:
            h, m, s = self.time
        where = tz if self.zone is None else zone(self.zone)
        return datetime(self.year, self.month, self.day, h, m, s, tzinfo=where)

    def text(self) -> str:
        out = f"{self.year:04d}{self.month:02d}{self.day:02d}"
        if self.time is not None:
            out += "T{:02d}{:02d}{:02d}".format(*self.time)
            if self.zone == "UTC":
                out += "Z"
        return out


@dataclass(frozen=True, eq=False)
class Rule:
    """A validated rule, independent of any start date.

    BYDAY is split like RFC 5545 reads it: ``byday`` holds plain weekdays (0 = Monday) and
    ``bynday`` the ordinal ones as ``(weekday, n)``. ``bymonthday``, ``byyearday``,
    ``byweekno`` and ``bysetpos`` keep negative values as given. Compared by identity:
    `parse_rule` hands out one instance per text, and per-rule caches hang off it.
    """

    freq: Freq
    interval: int = 1
    count: int | None = None
    until: DateValue | None = None
    wkst: int = 0
    bymonth: tuple[int, ...] | None = None
    byweekno: tuple[int, ...] | None = None
    byyearday: tuple[int, ...] | None = None
    bymonthday: tuple[int, ...] | None = None
    byday: tuple[int, ...] | None = None
    bynday: tuple[tuple[int, int], ...] | None = None
    byhour: tuple[int, ...] | None = None
    byminute: tuple[int, ...] | None = None
    bysecond: tuple[int, ...] | None = None
    bysetpos: tuple[int, ...] | None = None
    rdates: tuple[DateValue, ...] = ()
    exdates: tuple[DateValue, ...] = ()
    # Patterns derived from this rule for given start dates (see `pattern.pattern_for`).
    patterns: dict = field(default_factory=dict, repr=False)

    @property
    def is_set(self) -> bool:
        """True when EXDATE/RDATE values make this a recurrence set, not a bare rule."""
        return bool(self.rdates or self.exdates)

    @property
    def has_day_parts(self) -> bool:
        """Whether any part picks days, which stops dateutil filling day defaults from
        DTSTART (BYEASTER, the other such part, is refused)."""
        return any(
            part is not None
            for part in (self.byweekno, self.byyearday, self.bymonthday, self.byday, self.bynday)
        )

    def rrule_text(self) -> str:
        """The RRULE line (without UNTIL's zone resolution, without EXDATE/RDATE)."""
        parts = [f"FREQ={self.freq.name}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until.text()}")
        if self.wkst:
            parts.append(f"WKST={WEEKDAY_NAMES[self.wkst]}")
        for name in ("bysetpos", "bymonth", "bymonthday", "byyearday", "byweekno"):
            values = getattr(self, name)
            if values is not None:
                parts.append(f"{name.upper()}={','.join(map(str, values))}")
        days = [WEEKDAY_NAMES[d] for d in self.byday or ()]
        days += [f"{n:+d}{WEEKDAY_NAMES[d]}" for d, n in self.bynday or ()]
        if days:
            parts.append(f"BYDAY={','.join(days)}")
        for name in ("byhour", "byminute", "bysecond"):
            values = getattr(self, name)
            if values is not None:
                parts.append(f"{name.upper()}={','.join(map(str, values))}")
        return ";".join(parts)
