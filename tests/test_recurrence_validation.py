"""Two defects from the security review: numbers written in other scripts' digits, and
rules that are valid but never occur from the task's own start (`first_after`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from nextup.recurrence import RuleError, first_after, next_occurrence, parse_rule
from nextup.recurrence.phrases import translate
from test_recurrence_differential import random_parts

# Digits Python's int() or regex \d read, or str.isnumeric() calls numbers, that are not
# 0-9, by code point of 0..9 (written as code points: the glyphs look like ASCII digits).
FOREIGN_DIGITS = {
    "arabic-indic": [0x0660 + n for n in range(10)],
    "extended arabic-indic": [0x06F0 + n for n in range(10)],
    "devanagari": [0x0966 + n for n in range(10)],
    "fullwidth": [0xFF10 + n for n in range(10)],
    "mathematical bold": [0x1D7CE + n for n in range(10)],
    "superscript": [0x2070, 0xB9, 0xB2, 0xB3, *range(0x2074, 0x207A)],
    "circled": [0x24EA, *range(0x2460, 0x2469)],
}


def foreign(text: str, script: str) -> str:
    """``text`` with every ASCII digit written in ``script``."""
    digits = FOREIGN_DIGITS[script]
    return "".join(chr(digits[int(c)]) if c.isdigit() and c.isascii() else c for c in text)


RRULE_CASES = [
    ("FREQ=DAILY;INTERVAL=2", "INTERVAL"),
    ("FREQ=DAILY;COUNT=3", "COUNT"),
    ("FREQ=MONTHLY;BYMONTHDAY=1", "BYMONTHDAY"),
    ("FREQ=MONTHLY;BYDAY=2TU", "BYDAY"),
    ("FREQ=YEARLY;BYMONTH=4", "BYMONTH"),
    ("FREQ=DAILY;BYHOUR=9", "BYHOUR"),
    ("FREQ=DAILY;BYSETPOS=1;BYHOUR=9,10", "BYSETPOS"),
    ("FREQ=DAILY;UNTIL=20270630", "UNTIL"),
]


@pytest.mark.parametrize("script", sorted(FOREIGN_DIGITS))
@pytest.mark.parametrize(("rule", "part"), RRULE_CASES)
def test_rrule_parts_take_ascii_digits_only(rule: str, part: str, script: str) -> None:
    name, _, value = rule.rpartition(f"{part}=")
    written = f"{name}{part}={foreign(value.split(';')[0], script)}"
    assert parse_rule(rule)  # the ASCII form is valid
    with pytest.raises(RuleError, match=f"^{part} must be written with the digits 0-9"):
        parse_rule(written)


@pytest.mark.parametrize("script", sorted(FOREIGN_DIGITS))
@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("EXDATE:20240102T090000Z", "EXDATE"),
        ("RDATE:20240102", "RDATE"),
        ("EXDATE;TZID=Europe/Berlin:20240102T090000", "EXDATE"),
    ],
)
def test_exdate_and_rdate_take_ascii_digits_only(line: str, name: str, script: str) -> None:
    head, _, value = line.rpartition(":")
    assert parse_rule(f"FREQ=DAILY\n{line}")
    with pytest.raises(RuleError, match=f"^{name} must be written with the digits 0-9"):
        parse_rule(f"FREQ=DAILY\n{head}:{foreign(value, script)}")


@pytest.mark.parametrize("script", sorted(FOREIGN_DIGITS))
@pytest.mark.parametrize(
    "phrase",
    [
        "every 3 days",
        "every 15th",
        "every day at 7:30",
        "every day until 2027-06-30",
        "every day for 10 times",
        "every jan 27",
    ],
)
def test_phrases_take_ascii_digits_only(phrase: str, script: str) -> None:
    assert translate(phrase) is not None
    with pytest.raises(RuleError, match="numbers in a phrase must be written with the digits"):
        parse_rule(foreign(phrase, script))


# first_after: does the rule occur at all from this start?


@pytest.mark.parametrize(
    ("rule", "start"),
    [
        ("FREQ=DAILY;INTERVAL=3659;BYMONTH=2;BYMONTHDAY=29", datetime(2025, 1, 1, tzinfo=UTC)),
        ("FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366", datetime(2025, 1, 1, tzinfo=UTC)),
        ("FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29", datetime(2021, 3, 1, tzinfo=UTC)),
        ("FREQ=MINUTELY;INTERVAL=120;BYHOUR=1", datetime(2024, 1, 1, tzinfo=UTC)),
        ("FREQ=DAILY;UNTIL=20240101", datetime(2024, 6, 1, tzinfo=UTC)),
        ("FREQ=DAILY;COUNT=1\nEXDATE:20240601T000000Z", datetime(2024, 6, 1, tzinfo=UTC)),
    ],
)
def test_rules_that_never_occur_from_their_start(rule: str, start: datetime) -> None:
    parse_rule(rule)  # valid without a start
    assert first_after(rule, start) is None


@pytest.mark.parametrize(
    ("rule", "start", "first"),
    [
        (
            "FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366",
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2024, 12, 31, tzinfo=UTC),
        ),
        ("FREQ=DAILY", datetime(2024, 6, 1, 9, tzinfo=UTC), datetime(2024, 6, 1, 9, tzinfo=UTC)),
        (
            "every 2nd tuesday at 9:00",
            datetime(2024, 1, 1, 12, 0, 0, 500, tzinfo=UTC),
            datetime(2024, 1, 9, 9, tzinfo=UTC),
        ),
        (
            # dtstart's own instant counts, even with microseconds (dateutil drops them).
            "FREQ=DAILY",
            datetime(1800, 1, 1, 0, 0, 0, 7, tzinfo=UTC),
            datetime(1800, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_first_after_is_the_first_occurrence(rule: str, start, first) -> None:
    assert first_after(rule, start) == first


def test_first_after_refuses_what_is_invalid() -> None:
    with pytest.raises(RuleError, match="can never occur"):
        first_after("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(RuleError, match="timezone-aware") as caught:
        first_after("FREQ=DAILY", datetime(2024, 1, 1))
    assert caught.value.field == "dtstart"
    # next_occurrence still refuses a rule that never occurs from its start.
    with pytest.raises(RuleError, match="can never occur from"):
        next_occurrence(
            "FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366",
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime(2025, 1, 1, tzinfo=UTC),
        )


ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")]
HORIZON_YEARS = 60  # generated rules end by UNTIL, so dateutil's walk stays bounded


def _sparse_parts(rng: random.Random) -> str:
    """Rules that often never occur from a given start: a large interval against a
    calendar part (a leap day, a 31st, a 5th weekday, a late day of the year)."""
    freq = rng.choice(("YEARLY", "MONTHLY", "DAILY"))
    interval = {"YEARLY": (2, 3, 4, 8, 100), "MONTHLY": (2, 3, 12, 24, 48)}.get(
        freq, (365, 366, 1461, 3659)
    )
    parts = [f"FREQ={freq}", f"INTERVAL={rng.choice(interval)}"]
    calendar = [
        "BYMONTH=2;BYMONTHDAY=29",
        "BYMONTHDAY=31",
        "BYMONTH=2,4;BYMONTHDAY=30,31",
        "BYDAY=5FR" if freq != "DAILY" else "BYDAY=FR;BYMONTHDAY=13",
    ]
    if freq == "YEARLY":
        calendar.append(f"BYYEARDAY={rng.choice((366, -366, 365))}")
    parts.append(rng.choice(calendar))
    return ";".join(parts)


@pytest.mark.parametrize("seed", range(4))
def test_first_after_agrees_with_dateutil(seed: int) -> None:
    rng = random.Random(seed)
    compared = none = 0
    for i in range(150):
        rule = _sparse_parts(rng) if i % 2 else ";".join(random_parts(rng)[1])
        try:
            parse_rule(rule)
        except RuleError:
            continue
        zone = rng.choice(ZONES)
        start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=rng.uniform(0, 40 * 365))
        start = start.astimezone(zone).replace(microsecond=0)
        end = start.astimezone(UTC) + timedelta(days=365 * HORIZON_YEARS)
        bounded = f"{rule};UNTIL={end:%Y%m%dT%H%M%SZ}"
        got = first_after(bounded, start)
        try:
            expected = rrulestr(bounded, dtstart=start).after(start, inc=True)
        except ValueError:  # dateutil's word for "BYHOUR/BYMINUTE never reached"
            expected = None
        if expected is None:
            assert got is None, f"{bounded} from {start}: got {got}"
            none += 1
        else:
            assert got is not None, f"{bounded} from {start}: got None, dateutil {expected}"
            assert got.astimezone(UTC) == expected.astimezone(UTC), f"{bounded} from {start}"
        compared += 1
    assert compared >= 100
    assert none >= 5  # the property is tested on both sides
