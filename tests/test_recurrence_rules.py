"""Rule text: friendly forms, RRULE syntax, and every refusal (fast, with a useful message)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextup.recurrence import RuleError, next_occurrence, parse_rule

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2024, 1, 1, 9, 0, tzinfo=BERLIN)  # a Monday
AFTER = datetime(2024, 6, 1, tzinfo=UTC)
NOON = datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("friendly", "rrule"),
    [
        ("daily", "FREQ=DAILY"),
        ("  Every   Day ", "FREQ=DAILY"),
        ("weekly", "FREQ=WEEKLY"),
        ("every week", "FREQ=WEEKLY"),
        ("weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        ("every weekday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
        ("monthly", "FREQ=MONTHLY"),
        ("every month", "FREQ=MONTHLY"),
        ("yearly", "FREQ=YEARLY"),
        ("every year", "FREQ=YEARLY"),
        ("annually", "FREQ=YEARLY"),
        ("biweekly", "FREQ=WEEKLY;INTERVAL=2"),
        ("every 3 days", "FREQ=DAILY;INTERVAL=3"),
        ("every 1 day", "FREQ=DAILY"),
        ("EVERY 2 WEEKS", "FREQ=WEEKLY;INTERVAL=2"),
        ("every 6 months", "FREQ=MONTHLY;INTERVAL=6"),
        ("every 2 years", "FREQ=YEARLY;INTERVAL=2"),
        ("hourly", "FREQ=HOURLY"),
        ("every 90 minutes", "FREQ=MINUTELY;INTERVAL=90"),
    ],
)
def test_friendly_forms(friendly: str, rrule: str) -> None:
    assert parse_rule(friendly).rrule_text() == rrule
    assert next_occurrence(friendly, START, AFTER) == next_occurrence(rrule, START, AFTER)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # recurring_pattern values as the seed's producers send them
        ("daily", datetime(2024, 6, 1, 9, tzinfo=BERLIN)),
        ("weekly", datetime(2024, 6, 3, 9, tzinfo=BERLIN)),
        ("monthly", datetime(2024, 6, 1, 9, tzinfo=BERLIN)),
        ("yearly", datetime(2025, 1, 1, 9, tzinfo=BERLIN)),
        ("weekdays", datetime(2024, 6, 3, 9, tzinfo=BERLIN)),
        ("FREQ=WEEKLY;BYDAY=MO,TH", datetime(2024, 6, 3, 9, tzinfo=BERLIN)),
        ("RRULE:FREQ=DAILY;COUNT=10", None),
        ("rrule:freq=monthly;byday=-1fr", datetime(2024, 6, 28, 9, tzinfo=BERLIN)),
    ],
)
def test_seed_patterns(pattern: str, expected: datetime | None) -> None:
    assert next_occurrence(pattern, START, AFTER) == expected


def test_rrule_syntax_variants() -> None:
    same = [
        "FREQ=WEEKLY;BYDAY=MO,WE",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE",
        "rrule:freq=weekly;byday=we,mo;",
        " FREQ = WEEKLY ; BYDAY = MO , WE ",
        "RRULE:FREQ=WEEKLY;\n BYDAY=MO,WE",  # RFC 5545 line folding
        "BYDAY=MO,WE;FREQ=WEEKLY;WKST=MO",
    ]
    answers = {next_occurrence(rule, START, AFTER) for rule in same}
    assert answers == {datetime(2024, 6, 3, 9, tzinfo=BERLIN)}


def test_parse_rule_is_cached_by_text() -> None:
    assert parse_rule("FREQ=DAILY;BYHOUR=7") is parse_rule("FREQ=DAILY;BYHOUR=7")


def test_exdate_rdate_lines() -> None:
    rule = parse_rule(
        "RRULE:FREQ=DAILY\nEXDATE;TZID=Europe/Berlin:20240602T090000,20240603T090000\n"
        "RDATE;VALUE=DATE:20240610\nEXDATE:20240604T070000Z"
    )
    assert len(rule.exdates) == 3 and len(rule.rdates) == 1
    text = "FREQ=DAILY\nEXDATE:20240602T090000,20240603T090000\nEXDATE:20240604T070000Z"
    assert next_occurrence(text, START, NOON) == datetime(2024, 6, 5, 9, tzinfo=BERLIN)


def test_until_forms() -> None:
    # Z: UTC; floating: dtstart's zone; a bare date: the end of that day there.
    assert next_occurrence("FREQ=DAILY;UNTIL=20240602T070000Z", START, NOON) is not None
    assert next_occurrence("FREQ=DAILY;UNTIL=20240602T065959Z", START, NOON) is None
    assert next_occurrence("FREQ=DAILY;UNTIL=20240602T090000", START, NOON) is not None
    assert next_occurrence("FREQ=DAILY;UNTIL=20240602T085959", START, NOON) is None
    assert next_occurrence("FREQ=DAILY;UNTIL=20240602", START, NOON) is not None
    assert next_occurrence("FREQ=DAILY;UNTIL=20240601", START, NOON) is None


def _rejects(call, fragment: str, field: str = "rule") -> RuleError:
    """``call()`` raises RuleError naming the problem, in under 10 ms (best of 5 tries, so
    that another process taking the CPU for a moment does not count)."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        with pytest.raises(RuleError) as caught:
            call()
        best = min(best, time.perf_counter() - started)
    assert fragment in str(caught.value)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert best < 0.010, f"took {best * 1000:.1f} ms"
    return caught.value


PARSE_REJECTIONS = [
    # what python-dateutil loops on for ever, or walks to the year 9999 for
    ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a positive integer"),
    ("FREQ=DAILY;INTERVAL=-2", "INTERVAL must be a positive integer"),
    (
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "rule can never occur: no date matches BYMONTH=2 with BYMONTHDAY=30",
    ),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30,31", "rule can never occur"),
    ("FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30", "rule can never occur"),
    ("FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4,6", "BYMONTH=4,6 with BYMONTHDAY=31"),
    ("FREQ=YEARLY;BYWEEKNO=1;BYMONTH=7", "BYMONTH=7 with BYWEEKNO=1"),
    ("FREQ=YEARLY;BYWEEKNO=30;BYMONTH=1,12", "rule can never occur"),
    ("FREQ=YEARLY;BYYEARDAY=100;BYMONTH=1", "rule can never occur"),
    ("FREQ=YEARLY;BYMONTHDAY=-31;BYMONTH=2", "rule can never occur"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "BYSETPOS=6"),
    ("FREQ=DAILY;BYHOUR=9,18;BYSETPOS=3", "BYSETPOS=3"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYSETPOS=2", "BYSETPOS=2"),
    # unsupported or malformed
    ("FREQ=SECONDLY", "FREQ=SECONDLY is not supported: MINUTELY is the finest frequency"),
    ("FREQ=FORTNIGHTLY", "unknown FREQ"),
    ("BYDAY=MO", "FREQ is required"),
    ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears more than once"),
    ("FREQ=DAILY;COUNT=3;COUNT=4", "COUNT appears more than once"),
    ("FREQ=DAILY;X-NAME=1", "unknown rule part 'X-NAME'"),
    ("FREQ=YEARLY;BYEASTER=0", "BYEASTER"),
    ("FREQ=DAILY;BYHOUR", "malformed rule part 'BYHOUR'"),
    ("FREQ=DAILY;BYHOUR=", "BYHOUR has no value"),
    ("FREQ=DAILY;BYHOUR=24", "BYHOUR values must be integers from 0 to 23"),
    ("FREQ=DAILY;BYSECOND=60", "BYSECOND values must be integers from 0 to 59"),
    ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY values must be integers"),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY values must be integers"),
    ("FREQ=YEARLY;BYYEARDAY=367", "BYYEARDAY values must be integers"),
    ("FREQ=YEARLY;BYWEEKNO=54", "BYWEEKNO values must be integers"),
    ("FREQ=YEARLY;BYMONTH=13", "BYMONTH values must be integers from 1 to 12"),
    ("FREQ=MONTHLY;BYSETPOS=0;BYDAY=MO", "BYSETPOS values must be integers"),
    ("FREQ=WEEKLY;BYDAY=XX", "invalid BYDAY value 'XX'"),
    ("FREQ=MONTHLY;BYDAY=0MO", "must be from 1 to 53"),
    ("FREQ=WEEKLY;WKST=XX", "WKST must be one of"),
    ("FREQ=DAILY;COUNT=0", "COUNT must be a positive integer"),
    ("FREQ=DAILY;COUNT=2000000", "COUNT must be at most 1000000"),
    ("FREQ=DAILY;INTERVAL=99999", "INTERVAL must be at most 3660 for FREQ=DAILY"),
    ("FREQ=MINUTELY;INTERVAL=20000", "INTERVAL must be at most 10080"),
    ("FREQ=DAILY;UNTIL=2024-01-01", "UNTIL must be a date"),
    ("FREQ=DAILY;UNTIL=20240230", "UNTIL must be a date"),
    ("FREQ=DAILY;UNTIL=17000101", "UNTIL must be a date"),
    ("FREQ=DAILY;COUNT=5;UNTIL=20250101", "COUNT and UNTIL cannot both be given"),
    # RFC 5545 combinations, and what dateutil would get wrong
    ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY is not allowed with FREQ=WEEKLY"),
    ("FREQ=MONTHLY;BYWEEKNO=1", "BYWEEKNO is only allowed with FREQ=YEARLY"),
    ("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY is not allowed with FREQ=DAILY"),
    ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY ordinals such as +1MO need FREQ=MONTHLY or FREQ=YEARLY"),
    ("FREQ=YEARLY;BYWEEKNO=1;BYDAY=1MO", "BYDAY ordinals cannot be combined with BYWEEKNO"),
    ("FREQ=MONTHLY;BYDAY=MO,1TU", "BYDAY cannot mix plain weekdays and ordinals"),
    ("FREQ=MONTHLY;BYDAY=6MO", "within a month must be from 1 to 5"),
    ("FREQ=YEARLY;BYMONTH=3;BYDAY=-6FR", "within a month must be from 1 to 5"),
    ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs another BYxxx part"),
    ("FREQ=HOURLY;INTERVAL=5;BYMONTHDAY=1", "needs an INTERVAL that divides 24"),
    ("FREQ=MINUTELY;INTERVAL=7;BYMONTH=1", "needs an INTERVAL that divides 1440"),
    # lines and sizes
    ("", "rule is empty"),
    ("   ", "rule is empty"),
    ("x" * 3000, "longer than 2048 characters"),
    ("sometimes", "unrecognised rule 'sometimes'"),
    ("every 0 days", "INTERVAL must be a positive integer"),
    ("DTSTART:20240101T090000Z\nRRULE:FREQ=DAILY", "DTSTART is not allowed in the rule"),
    ("RRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY", "only one RRULE line"),
    ("RRULE;X=1:FREQ=DAILY", "RRULE takes no parameters"),
    ("FREQ=DAILY\nEXRULE:FREQ=WEEKLY", "EXRULE is not supported"),
    ("FREQ=DAILY\nSUMMARY:hello", "unsupported line 'SUMMARY'"),
    ("EXDATE:20240101T000000Z", "the rule has no RRULE line"),
    ("FREQ=DAILY\nEXDATE:2024010", "malformed date"),
    ("FREQ=DAILY\nEXDATE;TZID=Mars/Olympus:20240101T000000", "unknown time zone 'Mars/Olympus'"),
    ("FREQ=DAILY\nEXDATE;TZID=UTC:20240101T000000Z", "must not end in Z"),
    ("FREQ=DAILY\nEXDATE;TZID=" + "a" * 300 + ":20240101T000000", "unknown time zone"),
    ("FREQ=DAILY\nEXDATE;TZID=../../etc/passwd:20240101T000000", "unknown time zone"),
    ("FREQ=DAILY\nRDATE;X-FOO=1:20240101", "unsupported RDATE parameter"),
    (
        "FREQ=DAILY\nEXDATE:"
        + ",".join(f"2024{m:02d}{d:02d}" for m in range(1, 6) for d in range(1, 22)),
        "at most 100 EXDATE and RDATE values",
    ),
    (
        "FREQ=YEARLY;BYDAY="
        + ",".join(f"{n}MO" for n in range(1, 54))
        + ","
        + ",".join(f"{n}TU" for n in range(1, 13)),
        "BYDAY lists at most 64 values",
    ),
    (
        "FREQ=DAILY;BYMINUTE="
        + ",".join(map(str, range(60)))
        + ";BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,"
        "13,14,15,16,17,18,19,20,21,22,23;BYSECOND=0,1",
        "at most 1440 are allowed",
    ),
]


@pytest.mark.parametrize(("rule", "fragment"), PARSE_REJECTIONS)
def test_invalid_rules_are_refused_fast(rule: str, fragment: str) -> None:
    _rejects(lambda: parse_rule(rule), fragment)
    _rejects(lambda: next_occurrence(rule, START, AFTER), fragment)


def test_non_string_rule() -> None:
    _rejects(lambda: parse_rule(42), "rule must be a string")  # type: ignore[arg-type]


START_REJECTIONS = [
    # never a leap year: 2021 + 4k is always 1 modulo 4
    (
        "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29",
        datetime(2021, 3, 1, tzinfo=UTC),
        "can never occur",
    ),
    # dateutil refuses this one itself, at construction
    (
        "FREQ=HOURLY;INTERVAL=2;BYHOUR=1",
        datetime(2024, 1, 1, 4, tzinfo=UTC),
        "never reaches BYHOUR=1",
    ),
    # ... and this one with a ValueError once iterated
    ("FREQ=MINUTELY;INTERVAL=120;BYHOUR=1", datetime(2024, 1, 1, tzinfo=UTC), "can never occur"),
    (
        "FREQ=MINUTELY;INTERVAL=2;BYMINUTE=1,3",
        datetime(2024, 1, 1, tzinfo=UTC),
        "never reaches BYMINUTE=1,3",
    ),
    # the day of month comes from the start: 30 February
    ("FREQ=YEARLY;BYMONTH=2", datetime(2024, 1, 30, tzinfo=UTC), "can never occur"),
    # August is never an odd number of months after November
    ("FREQ=MONTHLY;INTERVAL=2;BYMONTH=8", datetime(2024, 11, 5, tzinfo=UTC), "can never occur"),
]


@pytest.mark.parametrize(("rule", "dtstart", "fragment"), START_REJECTIONS)
def test_rules_that_never_occur_from_their_start(
    rule: str, dtstart: datetime, fragment: str
) -> None:
    parse_rule(rule)  # fine on its own: whether it occurs depends on the start
    _rejects(lambda: next_occurrence(rule, dtstart, AFTER), fragment)


def test_occurring_once_every_400_years_is_accepted() -> None:
    # 2100, 2200 and 2300 are no leap years; 2400 is.
    rule = "FREQ=YEARLY;INTERVAL=100;BYMONTH=2;BYMONTHDAY=29"
    start = datetime(2100, 1, 1, tzinfo=UTC)
    assert next_occurrence(rule, start, start) == datetime(2400, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("dtstart", "after", "fragment", "field"),
    [
        (datetime(2024, 1, 1), AFTER, "dtstart must be timezone-aware", "dtstart"),
        (START, datetime(2024, 6, 1), "after must be timezone-aware", "after"),
        (datetime(1500, 1, 1, tzinfo=UTC), AFTER, "dtstart must lie between", "dtstart"),
        (START, datetime(3500, 1, 1, tzinfo=UTC), "after must lie between", "after"),
        ("2024-01-01", AFTER, "dtstart must be a datetime", "dtstart"),
    ],
)
def test_bad_dates(dtstart, after, fragment: str, field: str) -> None:
    _rejects(lambda: next_occurrence("FREQ=DAILY", dtstart, after), fragment, field)


PART_NAMES = [
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "WKST",
    "BYDAY",
    "BYMONTH",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYSETPOS",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
    "BYEASTER",
    "X-FOO",
    "DTSTART",
    "RRULE:FREQ",
]
PART_VALUES = st.one_of(
    st.sampled_from(["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY"]),
    st.lists(st.integers(-400, 400), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    st.lists(
        st.sampled_from(["MO", "1TU", "-1FR", "53SU", "0MO", "+2WE", "XX"]), min_size=1, max_size=3
    ).map(",".join),
    st.sampled_from(["20240101", "20240101T090000", "20240101T090000Z", "2024", ""]),
    st.text(alphabet="0123456789+-,;=:TZ", max_size=12),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.sampled_from(
        [
            "FREQ=YEARLY;",
            "FREQ=MONTHLY;",
            "FREQ=WEEKLY;",
            "FREQ=DAILY;",
            "FREQ=HOURLY;",
            "FREQ=MINUTELY;",
            "",
        ]
    ),
    st.lists(st.tuples(st.sampled_from(PART_NAMES), PART_VALUES), min_size=1, max_size=6),
    st.sampled_from(["", "\nEXDATE:20240105T090000", "\nRDATE;VALUE=DATE:20240110", "\nX:1"]),
)
def test_any_rule_text_is_evaluated_or_refused_cleanly(freq, parts, extra) -> None:
    """Whatever the text, the answer is an occurrence, None, or a RuleError: never
    another exception, and never a hang."""
    text = freq + ";".join(f"{name}={value}" for name, value in parts) + extra
    try:
        next_occurrence(text, START, AFTER)
    except RuleError as error:
        assert str(error)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=120))
def test_arbitrary_text_is_refused_cleanly(text: str) -> None:
    try:
        parse_rule(text)
    except RuleError as error:
        assert str(error)
