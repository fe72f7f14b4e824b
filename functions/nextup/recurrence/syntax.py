"""Rule text to a validated `Rule`: RRULE lines, EXDATE/RDATE lines, or a phrase (`phrases`).

Parsing is strict and bounded: every part is checked for syntax, range and the RFC 5545
combination rules, and anything python-dateutil would accept but treat surprisingly
(mixed plain/ordinal BYDAY, BYEASTER, a DTSTART inside the rule) is refused with a
message naming the problem.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from math import prod
from zoneinfo import ZoneInfoNotFoundError

from nextup.recurrence.errors import RuleError, require_ascii_digits
from nextup.recurrence.feasibility import check_rule
from nextup.recurrence.limits import (
    MAX_COUNT,
    MAX_DATE_VALUE_YEAR,
    MAX_DATES,
    MAX_INTERVAL,
    MAX_RULE_CHARS,
    MAX_TIMES_PER_DAY,
    MAX_VALUES,
    MIN_DATE_VALUE_YEAR,
)
from nextup.recurrence.model import WEEKDAY_NAMES, DateValue, Freq, Rule, zone
from nextup.recurrence.phrases import translate

_WEEKDAYS = {name: i for i, name in enumerate(WEEKDAY_NAMES)}

# [0-9], not \d: \d (like int()) also reads other scripts' digits.
_DATE_VALUE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:T([0-9]{2})([0-9]{2})([0-9]{2})(Z)?)?")
_INTEGER = re.compile(r"[+-]?[0-9]{1,4}")
_POSITIVE = re.compile(r"\+?[0-9]{1,9}")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,3}")
_BYDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)")

# (lowest, highest, negatives allowed) per integer-list part.
_INT_PARTS = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
_KNOWN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", *_INT_PARTS}
# Parts that restrict days; with FREQ=HOURLY/MINUTELY they need an INTERVAL dividing the day.
_CALENDAR_PARTS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY")


def parse_rule(rule: str) -> Rule:
    """Validate rule text and compile it; raises `RuleError`. Cached by text.

    Accepts an RRULE with or without the ``RRULE:`` prefix, optionally followed by
    EXDATE/RDATE lines, or an English phrase (``daily``, ``every 2nd tuesday at 9:30``,
    ``every 3 days until 2027-06-30``: see `phrases`), compiled as the RRULE it means with
    its end written in. Checks that need no start date, including whether the rule can
    ever occur, are done here; the rest happens when a start date is known.
    """
    if not isinstance(rule, str):
        raise RuleError("rule must be a string")
    return _compile(rule)


@lru_cache(maxsize=1024)
def _compile(rule: str) -> Rule:
    if len(rule) > MAX_RULE_CHARS:
        raise RuleError(f"rule is longer than {MAX_RULE_CHARS} characters")
    text = rule.strip()
    if not text:
        raise RuleError("rule is empty")
    phrase = translate(text)
    if phrase is not None:  # English: compile the RRULE it means (the mode has none)
        text = phrase.full_rule
    compiled = _parse_lines(text)
    check_rule(compiled)
    return compiled


def _unfold(text: str) -> list[str]:
    # RFC 5545 3.1: a line starting with a space or tab continues the previous one.
    lines: list[str] = []
    for raw in text.splitlines():
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw.strip())
    return lines


def _parse_lines(text: str) -> Rule:
    body: str | None = None
    rdates: list[DateValue] = []
    exdates: list[DateValue] = []
    for line in _unfold(text):
        if ":" in line:
            head, value = line.split(":", 1)
            name, *params = head.strip().split(";")
            name = name.strip().upper()
        else:
            name, params, value = "RRULE", [], line
        if name == "RRULE":
            if params:
                raise RuleError("RRULE takes no parameters")
            if body is not None:
                raise RuleError("only one RRULE line is allowed")
            body = value
        elif name in ("EXDATE", "RDATE"):
            (exdates if name == "EXDATE" else rdates).extend(_date_list(name, params, value))
        elif name == "DTSTART":
            raise RuleError(
                "DTSTART is not allowed in the rule: the series start is passed separately"
            )
        elif name == "EXRULE":
            raise RuleError("EXRULE is not supported (RFC 5545 deprecates it); use EXDATE")
        else:
            raise RuleError(
                f"unsupported line {name!r}: only RRULE, EXDATE and RDATE lines are allowed"
            )
    if body is None:
        raise RuleError("the rule has no RRULE line")
    if len(rdates) + len(exdates) > MAX_DATES:
        raise RuleError(f"at most {MAX_DATES} EXDATE and RDATE values are allowed")
    return _parse_body(body, tuple(rdates), tuple(exdates))


def _parse_body(body: str, rdates: tuple[DateValue, ...], exdates: tuple[DateValue, ...]) -> Rule:
    parts = _split_parts(body)
    freq = _freq(parts.pop("FREQ", None))
    fields: dict = {"freq": freq, "rdates": rdates, "exdates": exdates}
    if "INTERVAL" in parts:
        fields["interval"] = _interval(freq, parts.pop("INTERVAL"))
    if "COUNT" in parts:
        fields["count"] = _count(parts.pop("COUNT"))
    if "UNTIL" in parts:
        if "count" in fields:
            raise RuleError("COUNT and UNTIL cannot both be given (RFC 5545)")
        fields["until"] = _until(parts.pop("UNTIL"))
    if "WKST" in parts:
        value = parts.pop("WKST")
        if value not in _WEEKDAYS:
            raise RuleError("WKST must be one of MO, TU, WE, TH, FR, SA, SU")
        fields["wkst"] = _WEEKDAYS[value]
    if "BYDAY" in parts:
        fields["byday"], fields["bynday"] = _byday(parts.pop("BYDAY"))
    for name, value in parts.items():
        fields[name.lower()] = _int_list(name, value)
    compiled = Rule(**fields)
    _check_combinations(compiled)
    return compiled


def _split_parts(body: str) -> dict[str, str]:
    items = body.strip().split(";")
    if len(items) > 1 and not items[-1].strip():
        items.pop()  # tolerate one trailing semicolon
    parts: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise RuleError(f"malformed rule part {item.strip()!r}: expected NAME=VALUE")
        name, value = (s.strip().upper() for s in item.split("=", 1))
        if name == "BYEASTER":
            raise RuleError("BYEASTER is a python-dateutil extension and is not supported")
        if name not in _KNOWN_PARTS:
            raise RuleError(f"unknown rule part {name!r}")
        if name in parts:
            raise RuleError(f"{name} appears more than once")
        if not value:
            raise RuleError(f"{name} has no value")
        require_ascii_digits(value, name)
        parts[name] = value
    return parts


def _freq(value: str | None) -> Freq:
    if value is None:
        raise RuleError("FREQ is required")
    if value == "SECONDLY":
        raise RuleError("FREQ=SECONDLY is not supported: MINUTELY is the finest frequency")
    if value not in Freq.__members__:
        raise RuleError(
            f"unknown FREQ {value!r}: use YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY or MINUTELY"
        )
    return Freq[value]


def _positive(name: str, value: str) -> int:
    if not _POSITIVE.fullmatch(value) or int(value) < 1:
        raise RuleError(f"{name} must be a positive integer")
    return int(value)


def _interval(freq: Freq, value: str) -> int:
    interval = _positive("INTERVAL", value)
    if interval > MAX_INTERVAL[freq]:
        raise RuleError(f"INTERVAL must be at most {MAX_INTERVAL[freq]} for FREQ={freq.name}")
    return interval


def _count(value: str) -> int:
    count = _positive("COUNT", value)
    if count > MAX_COUNT:
        raise RuleError(f"COUNT must be at most {MAX_COUNT}")
    return count


def _until(value: str) -> DateValue:
    try:
        return _date_value(value, None)
    except RuleError:
        raise RuleError(
            f"UNTIL must be a date (YYYYMMDD) or a date-time (YYYYMMDDTHHMMSS, optionally "
            f"ending in Z), not {value!r}"
        ) from None


def _date_value(text: str, tzid: str | None) -> DateValue:
    match = _DATE_VALUE.fullmatch(text.strip().upper())
    if not match:
        raise RuleError(f"malformed date {text.strip()!r}: expected YYYYMMDD or YYYYMMDDTHHMMSS[Z]")
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    clock = None if match[4] is None else (int(match[4]), int(match[5]), int(match[6]))
    try:
        datetime(year, month, day, *(clock or ()))
    except ValueError:
        raise RuleError(f"{text.strip()!r} is not a real date") from None
    if not MIN_DATE_VALUE_YEAR <= year <= MAX_DATE_VALUE_YEAR:
        raise RuleError(
            f"dates in a rule must lie between the years {MIN_DATE_VALUE_YEAR} and "
            f"{MAX_DATE_VALUE_YEAR}"
        )
    if match[7]:
        if tzid is not None:
            raise RuleError("a value with TZID must not end in Z")
        return DateValue(year, month, day, clock, "UTC")
    return DateValue(year, month, day, clock, tzid)


def _date_list(name: str, params: list[str], value: str) -> list[DateValue]:
    tzid = None
    for param in params:
        key, _, arg = param.strip().partition("=")
        key = key.upper()
        if key == "TZID":
            try:
                if not _ZONE_NAME.fullmatch(arg):
                    raise ValueError(arg)
                zone(arg)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise RuleError(f"unknown time zone {arg[:64]!r} in {name};TZID") from None
            tzid = arg
        elif key == "VALUE" and arg.upper() in ("DATE", "DATE-TIME"):
            continue  # the value's own shape says which it is
        else:
            raise RuleError(f"unsupported {name} parameter {param.strip()!r}")
    require_ascii_digits(value, name)
    items = value.split(",")
    if len(items) > MAX_DATES:
        raise RuleError(f"at most {MAX_DATES} EXDATE and RDATE values are allowed")
    return [_date_value(item, tzid) for item in items]


def _int_list(name: str, value: str) -> tuple[int, ...]:
    low, high, negatives = _INT_PARTS[name]
    numbers = set()
    for item in value.split(","):
        item = item.strip()
        number = int(item) if _INTEGER.fullmatch(item) else None
        if number is None or not (low <= number <= high or (negatives and -high <= number <= -low)):
            span = f"{low} to {high}" + (f" or -{high} to -{low}" if negatives else "")
            raise RuleError(f"{name} values must be integers from {span}, not {item!r}")
        numbers.add(number)
    if len(numbers) > MAX_VALUES[name]:
        raise RuleError(f"{name} lists at most {MAX_VALUES[name]} values")
    return tuple(sorted(numbers))


def _byday(value: str) -> tuple[tuple[int, ...] | None, tuple[tuple[int, int], ...] | None]:
    plain: set[int] = set()
    ordinal: set[tuple[int, int]] = set()
    for item in value.split(","):
        item = item.strip()
        match = _BYDAY.fullmatch(item)
        if not match:
            raise RuleError(f"invalid BYDAY value {item!r}: expected e.g. MO, 2TU or -1FR")
        day = _WEEKDAYS[match[2]]
        if match[1] is None:
            plain.add(day)
            continue
        n = int(match[1])
        if n == 0 or abs(n) > 53:
            raise RuleError(f"BYDAY ordinal in {item!r} must be from 1 to 53 or -53 to -1")
        ordinal.add((day, n))
    if len(plain) + len(ordinal) > MAX_VALUES["BYDAY"]:
        raise RuleError(f"BYDAY lists at most {MAX_VALUES['BYDAY']} values")
    return (tuple(sorted(plain)) or None, tuple(sorted(ordinal)) or None)


def _check_combinations(rule: Rule) -> None:
    """The RFC 5545 (3.3.10) restrictions, plus what python-dateutil gets wrong."""
    freq = rule.freq
    if rule.byweekno is not None and freq is not Freq.YEARLY:
        raise RuleError("BYWEEKNO is only allowed with FREQ=YEARLY (RFC 5545)")
    if rule.byyearday is not None and freq in (Freq.MONTHLY, Freq.WEEKLY, Freq.DAILY):
        raise RuleError(f"BYYEARDAY is not allowed with FREQ={freq.name} (RFC 5545)")
    if rule.bymonthday is not None and freq is Freq.WEEKLY:
        raise RuleError("BYMONTHDAY is not allowed with FREQ=WEEKLY (RFC 5545)")
    if rule.bynday is not None:
        _check_ordinals(rule)
    if rule.bysetpos is not None and not any(
        getattr(rule, name) is not None
        for name in (
            "bymonth",
            "byweekno",
            "byyearday",
            "bymonthday",
            "byday",
            "bynday",
            "byhour",
            "byminute",
            "bysecond",
        )
    ):
        raise RuleError("BYSETPOS needs another BYxxx part to pick from (RFC 5545)")
    times = prod(len(values) for values in (rule.byhour, rule.byminute, rule.bysecond) if values)
    if times > MAX_TIMES_PER_DAY:
        raise RuleError(
            f"BYHOUR, BYMINUTE and BYSECOND combine to {times} times a day; "
            f"at most {MAX_TIMES_PER_DAY} are allowed"
        )
    if freq in (Freq.HOURLY, Freq.MINUTELY):
        per_day = 24 if freq is Freq.HOURLY else 1440
        calendar = [name for name in _CALENDAR_PARTS if getattr(rule, name.lower()) is not None]
        if calendar and per_day % rule.interval:
            raise RuleError(
                f"with {' or '.join(calendar)}, FREQ={freq.name} needs an INTERVAL that "
                f"divides {per_day} (one day)"
            )


def _check_ordinals(rule: Rule) -> None:
    example = f"{rule.bynday[0][1]:+d}{WEEKDAY_NAMES[rule.bynday[0][0]]}"
    if rule.freq not in (Freq.MONTHLY, Freq.YEARLY):
        raise RuleError(
            f"BYDAY ordinals such as {example} need FREQ=MONTHLY or FREQ=YEARLY (RFC 5545)"
        )
    if rule.byweekno is not None:
        raise RuleError("BYDAY ordinals cannot be combined with BYWEEKNO (RFC 5545)")
    if rule.byday is not None:
        raise RuleError("BYDAY cannot mix plain weekdays and ordinals (such as MO with 1TU)")
    within_month = rule.freq is Freq.MONTHLY or rule.bymonth is not None
    limit = 5 if within_month else 53
    if any(abs(n) > limit for _, n in rule.bynday):
        scope = "a month" if within_month else "a year"
        raise RuleError(
            f"BYDAY ordinals within {scope} must be from 1 to {limit} or -{limit} to -1"
        )
