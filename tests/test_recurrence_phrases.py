"""The phrasebook: English phrases against the RRULEs they mean, checked through
python-dateutil on several starts (some in Europe/Berlin around DST changes), the
phrases' mode and end, unreadable phrases (with a suggestion), and the RecurrenceSpec
fields a phrase fills."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nextup.fields import RecurrenceSpec
from nextup.recurrence import Mode, RuleError, first_after, next_occurrence, parse_rule
from nextup.recurrence.phrases import DAY_CODES, DAY_NAMES, translate

BERLIN = ZoneInfo("Europe/Berlin")
STARTS = [
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2025, 3, 27, 10, 17, tzinfo=BERLIN),  # spring forward on the 30th
    datetime(2023, 10, 28, 23, 30, tzinfo=BERLIN),  # fall back the next night
    datetime(2026, 7, 15, 6, 45, 30, tzinfo=ZoneInfo("America/New_York")),
]
WORK = "BYDAY=MO,TU,WE,TH,FR"
T = ";BYSECOND=0"

# (phrase, the RRULE it means, what else it says: mode, until, count)
TABLE = [
    ("every day", "FREQ=DAILY", {}),
    ("daily", "FREQ=DAILY", {}),
    ("every weekday", f"FREQ=WEEKLY;{WORK}", {}),
    ("weekdays", f"FREQ=WEEKLY;{WORK}", {}),
    ("every workday", f"FREQ=WEEKLY;{WORK}", {}),
    ("every weekend", "FREQ=WEEKLY;BYDAY=SA,SU", {}),
    ("weekends", "FREQ=WEEKLY;BYDAY=SA,SU", {}),
    ("every week", "FREQ=WEEKLY", {}),
    ("weekly", "FREQ=WEEKLY", {}),
    ("every month", "FREQ=MONTHLY", {}),
    ("monthly", "FREQ=MONTHLY", {}),
    ("every year", "FREQ=YEARLY", {}),
    ("annually", "FREQ=YEARLY", {}),
    ("yearly", "FREQ=YEARLY", {}),
    ("every other day", "FREQ=DAILY;INTERVAL=2", {}),
    ("every other week", "FREQ=WEEKLY;INTERVAL=2", {}),
    ("biweekly", "FREQ=WEEKLY;INTERVAL=2", {}),
    ("fortnightly", "FREQ=WEEKLY;INTERVAL=2", {}),
    ("every fortnight", "FREQ=WEEKLY;INTERVAL=2", {}),
    ("every other month", "FREQ=MONTHLY;INTERVAL=2", {}),
    ("every other year", "FREQ=YEARLY;INTERVAL=2", {}),
    ("every minute", "FREQ=MINUTELY", {}),
    ("every 15 minutes", "FREQ=MINUTELY;INTERVAL=15", {}),
    ("every hour", "FREQ=HOURLY", {}),
    ("hourly", "FREQ=HOURLY", {}),
    ("every 3 hours", "FREQ=HOURLY;INTERVAL=3", {}),
    ("every 3 days", "FREQ=DAILY;INTERVAL=3", {}),
    ("every third day", "FREQ=DAILY;INTERVAL=3", {}),
    ("every 1 day", "FREQ=DAILY", {}),
    ("every two weeks", "FREQ=WEEKLY;INTERVAL=2", {}),
    ("every 6 months", "FREQ=MONTHLY;INTERVAL=6", {}),
    ("every 4 years", "FREQ=YEARLY;INTERVAL=4", {}),
    ("every quarter", "FREQ=MONTHLY;INTERVAL=3", {}),
    ("quarterly", "FREQ=MONTHLY;INTERVAL=3", {}),
    ("every 2 quarters", "FREQ=MONTHLY;INTERVAL=6", {}),
    ("every monday", "FREQ=WEEKLY;BYDAY=MO", {}),
    ("every mondays", "FREQ=WEEKLY;BYDAY=MO", {}),
    ("every mon, wed and fri", "FREQ=WEEKLY;BYDAY=MO,WE,FR", {}),
    ("every monday, wednesday, and friday", "FREQ=WEEKLY;BYDAY=MO,WE,FR", {}),
    ("every tue and thu", "FREQ=WEEKLY;BYDAY=TU,TH", {}),
    ("every saturday and sunday", "FREQ=WEEKLY;BYDAY=SA,SU", {}),
    ("every other friday", "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR", {}),
    ("every 2 weeks on mon and fri", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR", {}),
    ("every 15th", "FREQ=MONTHLY;BYMONTHDAY=15", {}),
    ("every 1st and 15th", "FREQ=MONTHLY;BYMONTHDAY=1,15", {}),
    ("every 1st, 10th and 20th of the month", "FREQ=MONTHLY;BYMONTHDAY=1,10,20", {}),
    ("every last day", "FREQ=MONTHLY;BYMONTHDAY=-1", {}),
    ("every last day of the month", "FREQ=MONTHLY;BYMONTHDAY=-1", {}),
    ("every second last day of the month", "FREQ=MONTHLY;BYMONTHDAY=-2", {}),
    ("every 1st and last day", "FREQ=MONTHLY;BYMONTHDAY=1,-1", {}),
    ("every month on the 31st", "FREQ=MONTHLY;BYMONTHDAY=31", {}),
    ("every 2 months on the 15th", "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=15", {}),
    ("every first monday", "FREQ=MONTHLY;BYDAY=1MO", {}),
    ("every 3rd friday", "FREQ=MONTHLY;BYDAY=3FR", {}),
    ("every last friday", "FREQ=MONTHLY;BYDAY=-1FR", {}),
    ("every second last friday", "FREQ=MONTHLY;BYDAY=-2FR", {}),
    ("every 2nd tuesday of the month", "FREQ=MONTHLY;BYDAY=2TU", {}),
    ("every 1st and 3rd monday", "FREQ=MONTHLY;BYDAY=1MO,3MO", {}),
    ("every first monday and last friday", "FREQ=MONTHLY;BYDAY=1MO,-1FR", {}),
    ("every 5th sunday", "FREQ=MONTHLY;BYDAY=5SU", {}),
    ("every first workday", f"FREQ=MONTHLY;{WORK};BYSETPOS=1", {}),
    ("every last workday of the month", f"FREQ=MONTHLY;{WORK};BYSETPOS=-1", {}),
    ("every last weekday", f"FREQ=MONTHLY;{WORK};BYSETPOS=-1", {}),
    ("every 2nd workday", f"FREQ=MONTHLY;{WORK};BYSETPOS=2", {}),
    ("every first weekend", "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1", {}),
    ("every jan 27th", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=27", {}),
    ("every 27 january", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=27", {}),
    ("every january 27", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=27", {}),
    ("every 27th of january", "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=27", {}),
    ("every feb 29", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", {}),
    ("every 1st of january and july", "FREQ=YEARLY;BYMONTH=1,7;BYMONTHDAY=1", {}),
    ("every last day of february", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1", {}),
    ("every 4th thursday of november", "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", {}),
    ("every last sunday of march", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", {}),
    ("every last sunday of march and october", "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU", {}),
    ("every last workday of december", f"FREQ=YEARLY;BYMONTH=12;{WORK};BYSETPOS=-1", {}),
    ("every year on the 4th thursday of november", "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", {}),
    ("every 2 years on jan 27", "FREQ=YEARLY;INTERVAL=2;BYMONTH=1;BYMONTHDAY=27", {}),
    ("every january and july", "FREQ=YEARLY;BYMONTH=1,7", {}),
    ("every 100th day of the year", "FREQ=YEARLY;BYYEARDAY=100", {}),
    ("every last day of the year", "FREQ=YEARLY;BYYEARDAY=-1", {}),
    ("every 20th monday of the year", "FREQ=YEARLY;BYDAY=20MO", {}),
    ("every day at 7am", f"FREQ=DAILY;BYHOUR=7;BYMINUTE=0{T}", {}),
    ("every day at 7 am", f"FREQ=DAILY;BYHOUR=7;BYMINUTE=0{T}", {}),
    ("every monday at 9:30", f"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=30{T}", {}),
    ("every weekday at 18:00", f"FREQ=WEEKLY;{WORK};BYHOUR=18;BYMINUTE=0{T}", {}),
    ("every day at 7:15pm", f"FREQ=DAILY;BYHOUR=19;BYMINUTE=15{T}", {}),
    ("every day at 12am", f"FREQ=DAILY;BYHOUR=0;BYMINUTE=0{T}", {}),
    ("every day at noon", f"FREQ=DAILY;BYHOUR=12;BYMINUTE=0{T}", {}),
    ("every day at midnight", f"FREQ=DAILY;BYHOUR=0;BYMINUTE=0{T}", {}),
    ("every day at 2:30", f"FREQ=DAILY;BYHOUR=2;BYMINUTE=30{T}", {}),  # in the DST gap
    ("every day at 9:00 and 17:00", f"FREQ=DAILY;BYHOUR=9,17;BYMINUTE=0{T}", {}),
    ("every day at 9, 9:30, 17 and 17:30", f"FREQ=DAILY;BYHOUR=9,17;BYMINUTE=0,30{T}", {}),
    ("every day at 6:00:30", "FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=30", {}),
    ("every 2nd tuesday at 9am", f"FREQ=MONTHLY;BYDAY=2TU;BYHOUR=9;BYMINUTE=0{T}", {}),
    ("every last workday at 17:00", f"FREQ=MONTHLY;{WORK};BYSETPOS=-1;BYHOUR=17;BYMINUTE=0{T}", {}),
    ("every hour at 9:30", f"FREQ=HOURLY;BYHOUR=9;BYMINUTE=30{T}", {}),
    ("every day until 2027-06-30", "FREQ=DAILY", {"until": (2027, 6, 30)}),
    # Ends within the instants compared from the last start, before any from the first.
    ("every 2 days until 2026-07-29", "FREQ=DAILY;INTERVAL=2", {"until": (2026, 7, 29)}),
    ("every day for 10 times", "FREQ=DAILY", {"count": 10}),
    ("every monday 3 times", "FREQ=WEEKLY;BYDAY=MO", {"count": 3}),
    ("every week for 4 occurrences", "FREQ=WEEKLY", {"count": 4}),
    (
        "every mon, wed and fri at 7:00 until 2027-06-30",
        f"FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=7;BYMINUTE=0{T}",
        {"until": (2027, 6, 30)},
    ),
    (
        "every day until 2026-12-31 at 8am",
        f"FREQ=DAILY;BYHOUR=8;BYMINUTE=0{T}",
        {"until": (2026, 12, 31)},
    ),
    ("every! 3 days", "FREQ=DAILY;INTERVAL=3", {"mode": Mode.COMPLETION}),
    ("every 3 days after completion", "FREQ=DAILY;INTERVAL=3", {"mode": Mode.COMPLETION}),
    ("after completion every week", "FREQ=WEEKLY", {"mode": Mode.COMPLETION}),
    ("daily after completion", "FREQ=DAILY", {"mode": Mode.COMPLETION}),
    (
        "every! 2 weeks at 10:00 for 5 times",
        f"FREQ=WEEKLY;INTERVAL=2;BYHOUR=10;BYMINUTE=0{T}",
        {"mode": Mode.COMPLETION, "count": 5},
    ),
]
PHRASES = [phrase for phrase, _, _ in TABLE]


def reference(rule: str, extra: dict, start: datetime):
    """dateutil's rrule for the expected RRULE, with the phrase's end (UNTIL in UTC, as
    dateutil requires with an aware start)."""
    expected = rrulestr(rule, dtstart=start)
    if "until" in extra:
        day = datetime(*extra["until"]).date()
        end = datetime.combine(day, time(23, 59, 59), start.tzinfo).astimezone(UTC)
        expected = expected.replace(until=end)
    if "count" in extra:
        expected = expected.replace(count=extra["count"])
    return expected


def first_instants(text: str, start: datetime, n: int) -> list[datetime]:
    got = []
    at = first_after(text, start)
    while at is not None and len(got) < n:
        got.append(at.astimezone(UTC))
        at = next_occurrence(text, start, at)
    return got


def expected_instants(expected, start: datetime, n: int) -> list[datetime]:
    # Stepping by instants, as next_occurrence does (dateutil's own iteration may yield
    # two walls at the same instant around a DST gap).
    found = []
    at = expected.after(start, inc=True)
    while at is not None and len(found) < n:
        found.append(at.astimezone(UTC))
        at = expected.after(at.astimezone(UTC))
    return found


def test_the_table_is_large_and_distinct() -> None:
    assert len(TABLE) >= 60
    assert len(set(PHRASES)) == len(PHRASES)


@pytest.mark.parametrize(("phrase", "rule", "extra"), TABLE, ids=PHRASES)
def test_phrase_means_its_rule_through_dateutil(phrase: str, rule: str, extra: dict) -> None:
    translated = translate(phrase)
    assert translated.rule == rule
    assert translated.mode == extra.get("mode")
    assert translated.count == extra.get("count")
    until = extra.get("until")
    assert translated.until == (None if until is None else datetime(*until, 23, 59, 59))
    series = 0
    for start in STARTS:
        n = 8 if "MINUTELY" in rule or "HOURLY" in rule else 10
        want = expected_instants(reference(rule, extra, start), start, n)
        assert first_instants(phrase, start, n) == want, f"{phrase} from {start}"
        series += bool(want)
    assert series >= 2  # not a comparison of empty series


@pytest.mark.parametrize(("phrase", "rule", "extra"), TABLE, ids=PHRASES)
def test_parse_rule_of_a_phrase_is_its_rrule(phrase: str, rule: str, extra: dict) -> None:
    full = translate(phrase).full_rule
    assert parse_rule(phrase).rrule_text() == parse_rule(full).rrule_text()
    # Cached by text: the phrase is translated once.
    assert parse_rule(phrase) is parse_rule(phrase)


@pytest.mark.parametrize(
    ("variant", "phrase"),
    [
        ("  EVERY Mon,  WED and FRI  ", "every mon, wed and fri"),
        ("Every 2nd Tuesday Of The Month AT 9AM", "every 2nd tuesday of the month at 9am"),
        ("\tDaily\n", "daily"),
        ("EVERY! 3 DAYS UNTIL 2027-06-30", "every! 3 days until 2027-06-30"),
        ("Every Jan 27TH", "every jan 27th"),
    ],
)
def test_case_and_spaces_do_not_matter(variant: str, phrase: str) -> None:
    assert translate(variant) == translate(phrase)
    assert parse_rule(variant).rrule_text() == parse_rule(phrase).rrule_text()


@pytest.mark.parametrize(
    "text",
    [
        "FREQ=DAILY",
        "RRULE:FREQ=WEEKLY;BYDAY=MO",
        "freq=daily;interval=2",
        "FREQ=DAILY\nEXDATE:20240102T090000Z",
        "EXDATE:20240102T090000Z",
        "RDATE;TZID=Europe/Berlin:20240102T090000",
    ],
)
def test_rrule_text_is_not_a_phrase(text: str) -> None:
    assert translate(text) is None


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("every thrusday", 'did you mean "every thursday"?'),
        ("evry day", 'did you mean "every day"?'),
        ("every 2 wekes", 'did you mean "every 2 weeks"?'),
        ("every mnday at 9am", 'did you mean "every monday at 9am"?'),
        ("every 3rd fridya of the month", 'did you mean "every 3rd friday of the month"?'),
        ("every janury 27", 'did you mean "every january 27"?'),
        ("sometimes", "a phrase such as"),
        ("every blue moon", "a phrase such as"),
    ],
)
def test_unreadable_phrase_suggests_a_readable_one(text: str, suggestion: str) -> None:
    with pytest.raises(RuleError) as caught:
        translate(text)
    assert suggestion in str(caught.value)
    assert str(caught.value).startswith(f"unrecognised rule {text!r}")
    with pytest.raises(RuleError, match="unrecognised rule"):
        parse_rule(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("every feb 30", "February has no day 30"),
        ("every april 31st", "April has no day 31"),
        ("every last", "say which day"),
        ("every second", "say which day"),
        ("every day at 25:00", "not a time of day"),
        ("every day at 13pm", "from 1 to 12"),
        ("every day at 9:00 and 17:30", "pair every hour with every minute"),
        ("every day until 2027-02-30", "is not a date"),
        ("every day until tomorrow", "'until' takes a date"),
        ("every day for 0 times", "for N times"),
        ("every day at 9 at 10", "said twice"),
        ("every day for 3 times until 2027-01-01", "not both"),
        ("every week on the 15th", "needs a day of the week"),
        ("every last workday at 9:00 and 17:00", "takes one time of day"),
        ("every", "every what"),
        ("on mondays", 'starts with "every"'),
        ("every 1st monday and 15th", "weekday after every ordinal"),
    ],
)
def test_phrases_that_say_something_impossible(text: str, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        translate(text)


def test_phrase_values_are_checked_by_the_rule_parser() -> None:
    # The phrasebook reads them; the RRULE's own limits refuse them, naming the part.
    with pytest.raises(RuleError, match="INTERVAL must be a positive integer"):
        parse_rule("every 0 days")
    with pytest.raises(RuleError, match="INTERVAL must be at most"):
        parse_rule("every 5000 days")
    with pytest.raises(RuleError, match="BYDAY ordinals within a month"):
        parse_rule("every 6th monday")


UNITS = {
    "minute": ("MINUTELY", 1),
    "hour": ("HOURLY", 1),
    "day": ("DAILY", 1),
    "week": ("WEEKLY", 1),
    "month": ("MONTHLY", 1),
    "quarter": ("MONTHLY", 3),
    "year": ("YEARLY", 1),
}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 99),
    unit=st.sampled_from(sorted(UNITS)),
    upper=st.booleans(),
    start=st.sampled_from(STARTS),
)
def test_every_n_units_is_freq_and_interval(n: int, unit: str, upper: bool, start) -> None:
    phrase = f"every {n} {unit}{'s' if n > 1 else ''}"
    if upper:
        phrase = phrase.upper()
    freq, per = UNITS[unit]
    expected = rrulestr(f"FREQ={freq};INTERVAL={n * per}", dtstart=start)
    assert first_instants(phrase, start, 5) == expected_instants(expected, start, 5)


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
    short=st.booleans(),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    start=st.sampled_from(STARTS),
)
def test_weekday_lists_at_a_time(days, short: bool, hour: int, minute: int, start) -> None:
    names = [DAY_NAMES[d][:3] if short else DAY_NAMES[d] for d in days]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    phrase = f"every {listed} at {hour}:{minute:02d}"
    byday = ",".join(DAY_CODES[d] for d in sorted(days))
    rule = f"FREQ=WEEKLY;BYDAY={byday};BYHOUR={hour};BYMINUTE={minute};BYSECOND=0"
    assert translate(phrase).rule == rule
    expected = rrulestr(rule, dtstart=start)
    assert first_instants(phrase, start, 6) == expected_instants(expected, start, 6)


# RecurrenceSpec: a phrase is stored as its RRULE; what it says fills the other fields.


def test_spec_stores_the_rrule_and_fills_the_fields() -> None:
    spec = RecurrenceSpec(rule="every! 3 days until 2027-06-30")
    assert spec.rule == "FREQ=DAILY;INTERVAL=3"
    assert spec.mode is Mode.COMPLETION
    assert spec.until == datetime(2027, 6, 30, 23, 59, 59)
    assert spec.count is None
    spec = RecurrenceSpec(rule="every monday at 9:00 for 10 times")
    assert spec.rule == f"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0{T}"
    assert (spec.mode, spec.count, spec.until) == (Mode.SCHEDULE, 10, None)


def test_spec_explicit_fields_win_and_must_agree() -> None:
    # Fields the phrase does not speak of are the producer's.
    spec = RecurrenceSpec(rule="every day", mode="completion", count=5)
    assert (spec.rule, spec.mode, spec.count) == ("FREQ=DAILY", Mode.COMPLETION, 5)
    # The same thing said twice is fine.
    spec = RecurrenceSpec(rule="every day for 10 times", count=10, until="2030-01-01")
    assert (spec.count, spec.until) == (10, datetime(2030, 1, 1, 23, 59, 59))
    spec = RecurrenceSpec(rule="every day until 2027-06-30", until="2027-06-30")
    assert spec.until == datetime(2027, 6, 30, 23, 59, 59)
    for fields, name in [
        ({"rule": "every day for 10 times", "count": 5}, "count"),
        ({"rule": "every! day", "mode": "schedule"}, "mode"),
        ({"rule": "every day until 2027-06-30", "until": "2027-07-01"}, "until"),
    ]:
        with pytest.raises(ValidationError, match=f"{name} .* contradicts the rule"):
            RecurrenceSpec(**fields)


def test_spec_unreadable_phrase_is_reported_at_the_rule() -> None:
    with pytest.raises(ValidationError) as caught:
        RecurrenceSpec(rule="every thrusday")
    (error,) = caught.value.errors()
    assert error["loc"] == ("rule",)
    assert 'did you mean "every thursday"?' in error["msg"]


def test_spec_rrule_text_is_kept_as_written() -> None:
    spec = RecurrenceSpec(rule="RRULE:FREQ=WEEKLY;BYDAY=MO", count=3)
    assert (spec.rule, spec.count, spec.mode) == ("RRULE:FREQ=WEEKLY;BYDAY=MO", 3, Mode.SCHEDULE)
