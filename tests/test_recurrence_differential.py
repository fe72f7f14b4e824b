"""`next_occurrence` against python-dateutil's brute force, instant for instant.

Rules are generated over every frequency and part (INTERVAL, COUNT, UNTIL, plain and
ordinal BYDAY, BYMONTHDAY with negatives, BYMONTH, BYYEARDAY, BYWEEKNO, BYSETPOS,
BYHOUR/BYMINUTE/BYSECOND, WKST, EXDATE/RDATE) with starts in zones with odd offsets and
DST rules, and ``after`` several periods past the start so that re-anchoring and counting
really run (asserted). The reference is ``rrulestr(...).after(after)`` on the normalised
rule (UNTIL converted to UTC by the test itself, EXDATE/RDATE added to an rruleset), whose
cost is kept bounded by bounding the span it has to walk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rruleset, rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextup.recurrence import RuleError, next_occurrence, parse_rule
from nextup.recurrence.search import InstantBound, Series, _anchor

ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # 30-minute DST shift
    ZoneInfo("Asia/Kathmandu"),  # +05:45
    ZoneInfo("Pacific/Apia"),  # skipped 2011-12-30 entirely
    ZoneInfo("Pacific/Chatham"),  # +12:45 / +13:45
    timezone(timedelta(hours=-3, minutes=-30)),
]
FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY")
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# How far past the start `after` may lie, so dateutil's walk stays short.
SPAN_DAYS = {
    "YEARLY": 40 * 366,
    "MONTHLY": 20 * 366,
    "WEEKLY": 8 * 366,
    "DAILY": 4 * 366,
    "HOURLY": 90,
    "MINUTELY": 2,
}
# At least this many periods past the start, so `after` is never in the first period.
MIN_PERIODS = {
    "YEARLY": 3 * 366,
    "MONTHLY": 93,
    "WEEKLY": 22,
    "DAILY": 3,
    "HOURLY": 0.2,
    "MINUTELY": 0.004,
}


@dataclass
class Case:
    rule: str  # what next_occurrence gets
    reference_rule: str  # the RRULE line dateutil gets (UTC UNTIL)
    dtstart: datetime
    after: datetime
    exdates: tuple[datetime, ...] = ()
    rdates: tuple[datetime, ...] = ()

    def expected(self) -> datetime | None:
        rule = rrulestr(self.reference_rule, dtstart=self.dtstart)
        if not (self.exdates or self.rdates):
            return rule.after(self.after)
        rset = rruleset()
        rset.rrule(rule)
        for value in self.exdates:
            rset.exdate(value)
        for value in self.rdates:
            rset.rdate(value)
        return rset.after(self.after)


def _pick(rng: random.Random, pool, low: int = 1, high: int = 3) -> list:
    return sorted(rng.sample(list(pool), rng.randint(low, min(high, len(pool)))))


def _csv(values) -> str:
    return ",".join(map(str, values))


def random_parts(rng: random.Random) -> tuple[str, list[str]]:
    """A rule's parts (without COUNT/UNTIL), mostly within what RFC 5545 allows."""
    freq = rng.choice(FREQS)
    parts = [f"FREQ={freq}"]
    if rng.random() < 0.4:
        choices = {
            "HOURLY": (2, 3, 4, 6, 8, 12, 5, 7, 48),
            "MINUTELY": (2, 5, 15, 30, 45, 90, 7, 100, 1439),
        }.get(freq, (2, 3, 4, 5, 7, 13))
        parts.append(f"INTERVAL={rng.choice(choices)}")
    if rng.random() < 0.3:
        parts.append(f"BYMONTH={_csv(_pick(rng, range(1, 13), 1, 5))}")
    if freq == "YEARLY" and rng.random() < 0.2:
        parts.append(f"BYWEEKNO={_csv(_pick(rng, [*range(1, 54), -1, -2, -53], 1, 3))}")
    if freq in ("YEARLY", "HOURLY", "MINUTELY") and rng.random() < 0.15:
        parts.append(f"BYYEARDAY={_csv(_pick(rng, [*range(1, 367), *range(-366, 0)], 1, 6))}")
    if freq != "WEEKLY" and rng.random() < 0.3:
        parts.append(f"BYMONTHDAY={_csv(_pick(rng, [*range(1, 32), *range(-31, 0)], 1, 5))}")
    if rng.random() < 0.45:
        text = ";".join(parts)
        if freq in ("MONTHLY", "YEARLY") and "BYWEEKNO" not in text and rng.random() < 0.5:
            limit = 5 if (freq == "MONTHLY" or "BYMONTH=" in text) else 53
            ordinals = [n for n in range(-limit, limit + 1) if n]
            days = {f"{rng.choice(ordinals)}{rng.choice(DAYS)}" for _ in range(rng.randint(1, 3))}
            parts.append(f"BYDAY={_csv(sorted(days))}")
        else:
            parts.append(f"BYDAY={_csv(_pick(rng, DAYS, 1, 5))}")
    if rng.random() < 0.25:
        parts.append(f"BYHOUR={_csv(_pick(rng, range(24), 1, 4))}")
    if rng.random() < 0.2:
        parts.append(f"BYMINUTE={_csv(_pick(rng, range(60), 1, 3))}")
    if rng.random() < 0.15:
        parts.append(f"BYSECOND={_csv(_pick(rng, range(60), 1, 2))}")
    if rng.random() < 0.25 and any(p.startswith("BY") for p in parts):
        parts.append(f"BYSETPOS={_csv(_pick(rng, (1, 2, 3, -1, -2, -3, 4, 5, 10, -10), 1, 2))}")
    if rng.random() < 0.2:
        parts.append(f"WKST={rng.choice(DAYS)}")
    rng.shuffle(parts)
    return freq, parts


def random_case(rng: random.Random) -> Case:
    freq, parts = random_parts(rng)
    tz = rng.choice(ZONES)
    wall = datetime(1995, 1, 1) + timedelta(
        days=rng.randint(0, 35 * 365), seconds=rng.randint(0, 86399)
    )
    if rng.random() < 0.6:
        wall = wall.replace(second=0)
    if rng.random() < 0.4:
        wall = wall.replace(minute=0)
    dtstart = wall.replace(tzinfo=tz)
    low, high = MIN_PERIODS[freq], SPAN_DAYS[freq]
    after = dtstart.astimezone(UTC) + timedelta(days=low + (high - low) * rng.random())
    if rng.random() < 0.5:
        after = after.astimezone(rng.choice(ZONES))
    rule = reference = ";".join(parts)
    if not _occurs(rule, dtstart):
        return Case(rule, reference, dtstart, after)  # refused: dateutil would walk for ever
    end = rng.random()
    if end < 0.15:
        rule, reference = _with_until(rng, rule, dtstart, after)
    elif end < 0.45:
        rule = reference = f"{rule};COUNT={_count_near(rule, dtstart, after, rng)}"
    case = Case(rule, reference, dtstart, after)
    if rng.random() < 0.15:
        _add_dates(rng, case)
    return case


def _with_until(
    rng: random.Random, rule: str, dtstart: datetime, after: datetime
) -> tuple[str, str]:
    """UNTIL near ``after``, written in UTC, floating or as a date; plus its UTC form."""
    tz = dtstart.tzinfo
    until = (after + timedelta(hours=rng.uniform(-72, 72))).astimezone(UTC)
    local = until.astimezone(tz).replace(tzinfo=None)
    kind = rng.random()
    if kind < 0.4:
        text, utc = until.strftime("%Y%m%dT%H%M%SZ"), until.astimezone(UTC).replace(microsecond=0)
    elif kind < 0.7:
        local = local.replace(microsecond=0)
        text, utc = local.strftime("%Y%m%dT%H%M%S"), local.replace(tzinfo=tz).astimezone(UTC)
    else:
        end_of_day = datetime(local.year, local.month, local.day, 23, 59, 59, tzinfo=tz)
        text, utc = local.strftime("%Y%m%d"), end_of_day.astimezone(UTC)
    return f"{rule};UNTIL={text}", f"{rule};UNTIL={utc:%Y%m%dT%H%M%SZ}"


def _occurs(rule: str, dtstart: datetime) -> bool:
    try:
        next_occurrence(rule, dtstart, dtstart)
    except RuleError:
        return False
    return True


def _count_near(rule: str, dtstart: datetime, after: datetime, rng: random.Random) -> int:
    """A COUNT at or just around the number of occurrences up to ``after``: the cases
    where counting one too many or too few changes the answer."""
    if not _occurs(rule, dtstart):
        return rng.choice((1, 5, 100))
    seen = 0
    for occurrence in rrulestr(rule, dtstart=dtstart):
        if occurrence > after or seen > 3000:
            break
        seen += 1
    return max(1, seen + rng.choice((-1, 0, 0, 1, 1, 2)))


def _add_dates(rng: random.Random, case: Case) -> None:
    """EXDATE values taken from real occurrences around ``after`` (so they matter), in
    UTC or floating; RDATE values near ``after``."""
    tz = case.dtstart.tzinfo
    lines = []
    try:
        near = list(
            rrulestr(case.reference_rule, dtstart=case.dtstart).xafter(
                case.after - timedelta(days=2), count=5
            )
        )
    except ValueError:
        near = []
    if near:
        picked = rng.sample(near, rng.randint(1, len(near)))
        if rng.random() < 0.5:
            lines.append("EXDATE:" + _csv(f"{x.astimezone(UTC):%Y%m%dT%H%M%SZ}" for x in picked))
            case.exdates = tuple(x.astimezone(UTC) for x in picked)
        else:
            lines.append("EXDATE:" + _csv(f"{x:%Y%m%dT%H%M%S}" for x in picked))
            case.exdates = tuple(x.replace(tzinfo=None).replace(tzinfo=tz) for x in picked)
    if rng.random() < 0.6:
        stamps = {
            (case.after + timedelta(minutes=rng.randint(-3000, 3000)))
            .astimezone(UTC)
            .replace(microsecond=0)
            for _ in range(rng.randint(1, 3))
        }
        lines.append("RDATE:" + _csv(f"{x:%Y%m%dT%H%M%SZ}" for x in sorted(stamps)))
        case.rdates = tuple(sorted(stamps))
    if lines:
        case.rule = "\n".join([case.rule, *lines])


def check(case: Case) -> bool:
    """Assert ours equals dateutil's answer; False if the rule was refused."""
    try:
        got = next_occurrence(case.rule, case.dtstart, case.after)
    except RuleError:
        return False
    expected = case.expected()
    where = f"{case.rule!r} from {case.dtstart!r} after {case.after!r}"
    if expected is None:
        assert got is None, f"{where}: got {got}, dateutil has none"
        return True
    assert got is not None, f"{where}: got None, dateutil {expected}"
    assert got.astimezone(UTC) == expected.astimezone(UTC), (
        f"{where}: got {got}, dateutil {expected}"
    )
    # Returned in dtstart's zone and normalised (no wall time inside a DST gap).
    assert got.tzinfo is case.dtstart.tzinfo
    normal = got.astimezone(UTC).astimezone(got.tzinfo)
    assert (normal.replace(tzinfo=None), normal.fold) == (got.replace(tzinfo=None), got.fold)
    return True


def anchored(case: Case) -> bool:
    """Whether the answer came from a re-anchored series (not a walk from the start)."""
    try:
        series = Series.of(parse_rule(case.rule), case.dtstart)
    except RuleError:
        return False
    bound = InstantBound(case.after.astimezone(UTC), series.tz)
    return _anchor(series, bound.lo, None)[0] > series.p0


@pytest.mark.parametrize("seed", range(8))
def test_random_rules_match_dateutil(seed: int) -> None:
    rng = random.Random(1_000 + seed)
    compared = with_count = moved = 0
    for _ in range(250):
        case = random_case(rng)
        if check(case):
            compared += 1
            moved += anchored(case)
            with_count += "COUNT=" in case.rule
    # Most generated rules are valid, and most answers came from the anchored path.
    assert compared >= 170
    assert with_count >= 40
    assert moved >= 0.8 * compared


@st.composite
def cases(draw) -> Case:
    freq = draw(st.sampled_from(FREQS))
    parts = [f"FREQ={freq}"]
    interval = draw(st.sampled_from((1, 1, 1, 2, 3, 5)))
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    lists = {
        "BYMONTH": st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True),
        "BYMONTHDAY": st.lists(
            st.integers(-31, 31).filter(bool), min_size=1, max_size=4, unique=True
        ),
        "BYHOUR": st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True),
        "BYMINUTE": st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True),
        "BYSETPOS": st.lists(st.integers(-4, 4).filter(bool), min_size=1, max_size=2, unique=True),
    }
    allowed = {"WEEKLY": ("BYMONTH", "BYHOUR", "BYMINUTE")}.get(freq, tuple(lists)[:-1])
    for name in allowed:
        if draw(st.booleans()):
            parts.append(f"{name}={_csv(sorted(draw(lists[name])))}")
    if draw(st.booleans()):
        parts.append(f"BYDAY={_csv(sorted(draw(st.sets(st.sampled_from(DAYS), min_size=1))))}")
    if len(parts) > 2 and draw(st.booleans()):
        parts.append(f"BYSETPOS={_csv(sorted(draw(lists['BYSETPOS'])))}")
    tz = draw(st.sampled_from(ZONES))
    wall = draw(st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1))).replace(microsecond=0)
    dtstart = wall.replace(tzinfo=tz)
    low, high = MIN_PERIODS[freq], SPAN_DAYS[freq]
    span = draw(st.floats(low, high, allow_nan=False))
    after = dtstart.astimezone(UTC) + timedelta(days=span)
    rule = ";".join(parts)
    if draw(st.booleans()):
        rng = random.Random(draw(st.integers(0, 2**16)))
        rule = f"{rule};COUNT={_count_near(rule, dtstart, after, rng)}"
    return Case(rule, rule, dtstart, after)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(cases())
def test_generated_rules_match_dateutil(case: Case) -> None:
    check(case)


def _last_occurrences(rule: str, dtstart: datetime) -> list[datetime]:
    return list(rrulestr(rule, dtstart=dtstart))


COUNT_RULES = [
    "FREQ=DAILY;COUNT=400",
    "FREQ=DAILY;INTERVAL=3;BYDAY=MO,WE,FR;COUNT=250",
    "FREQ=WEEKLY;BYDAY=TU,TH;COUNT=300",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1,-1;COUNT=200",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=150",
    "FREQ=MONTHLY;BYDAY=2TU;COUNT=120",
    "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=60",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=12",
    "FREQ=YEARLY;BYWEEKNO=1,53;BYDAY=MO;COUNT=40",
    "FREQ=YEARLY;BYYEARDAY=1,-1,100;COUNT=90",
    "FREQ=HOURLY;INTERVAL=5;BYDAY=SA,SU;COUNT=500",
    "FREQ=HOURLY;BYHOUR=9,17;BYMONTHDAY=1,15;COUNT=300",
    "FREQ=MINUTELY;INTERVAL=7;BYHOUR=9,10;COUNT=700",
    "FREQ=MINUTELY;INTERVAL=15;BYMONTH=3,4;BYDAY=SU;COUNT=900",
]


@pytest.mark.parametrize("rule", COUNT_RULES)
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_count_boundaries(rule: str, zone: str) -> None:
    """The last occurrence is found, and nothing right after it: an off-by-one in the
    counting before the anchor would shift or drop it."""
    dtstart = datetime(2003, 3, 29, 1, 30, tzinfo=ZoneInfo(zone))
    occurrences = _last_occurrences(rule, dtstart)
    last, before = occurrences[-1], occurrences[-2]
    assert next_occurrence(rule, dtstart, last - timedelta(seconds=1)) == last
    assert next_occurrence(rule, dtstart, before) == last
    assert next_occurrence(rule, dtstart, last) is None
    assert next_occurrence(rule, dtstart, last + timedelta(days=400)) is None
    # Far from the start, so the answer comes from a re-anchored, counted series.
    case = Case(rule, rule, dtstart, last - timedelta(seconds=1))
    assert anchored(case) or last - dtstart < timedelta(days=2)


def test_naive_exdate_reads_in_dtstart_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    dtstart = datetime(2020, 1, 6, 9, tzinfo=berlin)
    rule = "FREQ=WEEKLY;BYDAY=MO\nEXDATE:20240108T090000"
    assert next_occurrence(rule, dtstart, datetime(2024, 1, 2, tzinfo=UTC)) == datetime(
        2024, 1, 15, 9, tzinfo=berlin
    )
    rule = "FREQ=WEEKLY;BYDAY=MO\nEXDATE;TZID=America/New_York:20240108T030000"
    assert next_occurrence(rule, dtstart, datetime(2024, 1, 2, tzinfo=UTC)) == datetime(
        2024, 1, 15, 9, tzinfo=berlin
    )
    rule = "FREQ=WEEKLY;BYDAY=MO;COUNT=3\nRDATE:20300101T000000Z"
    assert next_occurrence(rule, dtstart, datetime(2024, 1, 2, tzinfo=UTC)) == datetime(
        2030, 1, 1, 1, tzinfo=berlin
    )
