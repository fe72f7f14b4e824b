"""Rules back to English (`explain`) and the next few occurrences (`upcoming`): every
phrase of the phrasebook's table reads back to its own rule, any valid rule gets an
explanation, and an explanation the phrasebook can read means the same series."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from nextup.recurrence import RuleError, explain, next_occurrence, parse_rule, translate, upcoming
from test_recurrence_differential import random_parts
from test_recurrence_phrases import PHRASES

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY_9 = datetime(2025, 1, 7, 9, tzinfo=BERLIN)


@pytest.mark.parametrize("phrase", PHRASES)
def test_every_table_phrase_reads_back_to_its_rule(phrase: str) -> None:
    meant = translate(phrase)
    back = translate(explain(meant.rule))
    assert back is not None and back.rule == meant.rule
    # The phrase itself, end and mode included.
    whole = translate(explain(phrase))
    assert (whole.rule, whole.until, whole.count) == (meant.rule, meant.until, meant.count)
    assert whole.mode == meant.mode


@pytest.mark.parametrize(
    ("rule", "tz", "text"),
    [
        (
            "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
            "Europe/Berlin",
            "every 2nd Tuesday of the month at 09:00, Europe/Berlin",
        ),
        ("FREQ=DAILY;INTERVAL=3", None, "every 3 days"),
        (
            "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=7;BYMINUTE=0;UNTIL=20270630",
            None,
            "every Monday, Wednesday and Friday at 07:00 until 2027-06-30",
        ),
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", None, "every weekday"),
        ("every! 3 days for 4 times", None, "every 3 days for 4 times after completion"),
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", None, "every last weekday of the month"),
        ("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", "UTC", "every 4th Thursday of November, UTC"),
        ("FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=27", None, "every January 27"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,-1", None, "every 1st and last day of the month"),
        # Not phrasebook shapes: their parts in words.
        (
            "FREQ=YEARLY;BYWEEKNO=1,20;BYDAY=MO",
            None,
            "every year in the 1st and 20th week of the year on Monday",
        ),
        (
            "FREQ=MONTHLY;BYDAY=MO,FR;BYSETPOS=2;COUNT=5\nEXDATE:20250101T090000Z",
            None,
            "every month on Monday and Friday, only the 2nd of each month's matches "
            "for 5 times, except 2025-01-01 09:00:00 UTC",
        ),
        ("FREQ=MINUTELY;BYSECOND=5,10", None, "every minute at second 5 and 10"),
        (
            "FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=TU,SU",
            None,
            "every 2 weeks on Tuesday and Sunday, weeks starting on Sunday",
        ),
    ],
)
def test_explanations(rule: str, tz: str | None, text: str) -> None:
    assert explain(rule, tz=tz) == text


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("FREQ=WEEKLY", "every Tuesday at 09:00"),
        ("FREQ=MONTHLY", "every 7th of the month at 09:00"),
        ("FREQ=YEARLY", "every January 7 at 09:00"),
        ("FREQ=DAILY;INTERVAL=2", "every 2 days at 09:00"),
        ("FREQ=HOURLY", "every hour at minute 0"),
        ("every 2nd tuesday", "every 2nd Tuesday of the month at 09:00"),
    ],
)
def test_a_start_fills_what_the_rule_leaves_open(rule: str, text: str) -> None:
    assert explain(rule, start=TUESDAY_9) == text
    if text != "every hour at minute 0":  # the phrasebook has no "at minute"
        # A phrase, meaning the same series from that start.
        assert upcoming(text, start=TUESDAY_9, count=6) == upcoming(rule, start=TUESDAY_9, count=6)


@pytest.mark.parametrize("seed", range(3))
def test_any_valid_rule_is_explained(seed: int) -> None:
    """Never a crash; and where the explanation is a phrase, it means the same series from
    the start it was written for."""
    rng = random.Random(seed)
    explained = readable = 0
    for _ in range(200):
        _, parts = random_parts(rng)
        rule = ";".join(parts)
        try:
            parse_rule(rule)
        except RuleError:
            continue
        start = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=rng.uniform(0, 3000))
        start = start.astimezone(BERLIN).replace(microsecond=0)
        assert explain(rule).startswith("every ")
        try:
            text = explain(rule, start=start)
            ours = upcoming(rule, start=start, count=4)
        except RuleError:  # never occurs from this start
            continue
        explained += 1
        try:
            translate(text)
        except RuleError:
            continue
        readable += 1
        assert upcoming(text, start=start, count=4) == ours, f"{rule} read as {text!r}"
    assert explained >= 100
    assert readable >= 10


def test_upcoming_is_the_engine_and_dateutil() -> None:
    rule = "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=18;BYMINUTE=0;BYSECOND=0"
    got = upcoming(rule, start=TUESDAY_9, count=7)
    reference = rrulestr(rule, dtstart=TUESDAY_9)
    assert got == list(reference.xafter(TUESDAY_9, count=7, inc=True))
    # After an instant: strictly after it.
    later = upcoming(rule, start=TUESDAY_9, count=3, after=got[2])
    assert later == got[3:6]
    assert later[0] == next_occurrence(rule, TUESDAY_9, got[2])
    # The start itself counts when it is an occurrence.
    assert upcoming("FREQ=DAILY", start=TUESDAY_9, count=1) == [TUESDAY_9]


def test_upcoming_stops_with_the_series_and_checks_count() -> None:
    assert len(upcoming("every day for 3 times", start=TUESDAY_9, count=10)) == 3
    assert upcoming("FREQ=DAILY", start=TUESDAY_9, count=0) == []
    for bad in (-1, 1001, True, 2.0):
        with pytest.raises(RuleError, match="count must be an integer") as caught:
            upcoming("FREQ=DAILY", start=TUESDAY_9, count=bad)
        assert caught.value.field == "count"


def test_explain_refuses_an_invalid_rule() -> None:
    with pytest.raises(RuleError, match="did you mean"):
        explain("every thrusday")
    with pytest.raises(RuleError, match="can never occur"):
        explain("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")
