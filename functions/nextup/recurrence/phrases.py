"""English recurrence phrases to the RFC 5545 rules they mean: the one place that reads
English (`explain` writes it).

    translate("every 2nd tuesday of the month at 9:30")
        -> Phrase(rule="FREQ=MONTHLY;BYDAY=2TU;BYHOUR=9;BYMINUTE=30;BYSECOND=0")

A phrase is read case-insensitively, spaces and commas free, numbers in the digits 0-9
only. It is ``every`` (``every!``: repeat after completion) followed by what repeats:

* a unit, with a count, ``other`` or an ordinal: ``every day``, ``every 3 weeks``, ``every
  other month``, ``every third day``, ``every quarter``, ``every minute`` ..., optionally
  ``on`` a day of that unit: ``every 2 weeks on mon and fri``, ``every month on the 15th``,
  ``every year on the 4th thursday of november``;
* days of the week: ``every monday``, ``every mon, wed and fri``, ``every weekday`` (or
  ``workday``: Monday to Friday), ``every weekend``, ``every other friday``;
* days of the month: ``every 15th``, ``every 1st and 15th``, ``every last day``, ``every
  second last day of the month``;
* weekdays of the month: ``every first monday``, ``every 1st and 3rd friday``, ``every
  first monday and last friday``; the n-th working day: ``every last workday`` (BYSETPOS);
* in given months or the year: ``... of november``, ``... of march and october``, ``every
  jan 27th``, ``every 27 january``, ``every january``, ``every 100th day of the year``;

or one word: ``daily``, ``weekly``, ``weekdays``, ``weekends``, ``monthly``, ``quarterly``,
``yearly``, ``annually``, ``biweekly``, ``fortnightly``, ``hourly``. Then, in any order:
``at`` times (``7am``, ``7:15pm``, ``18:00``, ``9``, ``noon``, ``midnight``; several joined by
``and`` when they pair every hour with every minute given, as BYHOUR x BYMINUTE does),
``until YYYY-MM-DD``, ``for N times`` (or ``N times``), ``after completion`` (also first).

RRULE text is not a phrase: `translate` returns None for it, so callers pass it on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from nextup.recurrence.errors import RuleError, require_ascii_digits
from nextup.recurrence.limits import MAX_RULE_CHARS
from nextup.recurrence.mode import Mode

DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
WORKDAYS = (0, 1, 2, 3, 4)
WEEKEND = (5, 6)

_WEEKDAYS = {
    **{name: i for i, name in enumerate(DAY_NAMES)},
    **{name[:3]: i for i, name in enumerate(DAY_NAMES)},
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_GROUPS = {"weekday": WORKDAYS, "workday": WORKDAYS, "weekend": WEEKEND}
_MONTHS = {
    **{name: i for i, name in enumerate(MONTH_NAMES, 1)},
    **{name[:3]: i for i, name in enumerate(MONTH_NAMES, 1)},
    "sept": 9,
}
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29: some Februaries
# unit -> (FREQ, months or weeks or ... per unit)
_UNITS = {
    "minute": ("MINUTELY", 1),
    "hour": ("HOURLY", 1),
    "day": ("DAILY", 1),
    "week": ("WEEKLY", 1),
    "fortnight": ("WEEKLY", 2),
    "month": ("MONTHLY", 1),
    "quarter": ("MONTHLY", 3),
    "year": ("YEARLY", 1),
}
_NUMBERS = {
    name: n
    for n, name in enumerate(
        [
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ],
        1,
    )
}
_ORDINALS = {
    name: n
    for n, name in enumerate(
        [
            "first",
            "second",
            "third",
            "fourth",
            "fifth",
            "sixth",
            "seventh",
            "eighth",
            "ninth",
            "tenth",
        ],
        1,
    )
}
# One-word forms, read as the phrase they stand for.
_ALIASES = {
    "daily": "every day",
    "weekly": "every week",
    "weekdays": "every weekday",
    "weekends": "every weekend",
    "monthly": "every month",
    "quarterly": "every quarter",
    "yearly": "every year",
    "annually": "every year",
    "biweekly": "every 2 weeks",
    "fortnightly": "every 2 weeks",
    "hourly": "every hour",
}
_KEYWORDS = [
    "every",
    "every!",
    "other",
    "and",
    "on",
    "the",
    "of",
    "in",
    "each",
    "at",
    "until",
    "for",
    "times",
    "time",
    "occurrences",
    "after",
    "completion",
    "last",
    "noon",
    "midnight",
    "am",
    "pm",
]
# Shown as the nearest readable form when a phrase cannot be read.
EXAMPLES = (
    "every day",
    "every weekday",
    "every weekend",
    "every other day",
    "every 3 days",
    "every 2 weeks",
    "every month",
    "every year",
    "every quarter",
    "every 30 minutes",
    "every hour",
    "every monday",
    "every mon, wed and fri",
    "every other friday",
    "every 15th",
    "every 1st and 15th",
    "every last day",
    "every first monday",
    "every 2nd tuesday of the month",
    "every last workday",
    "every jan 27th",
    "every 4th thursday of november",
    "every day at 7am",
    "every monday at 9:30",
    "every day until 2027-06-30",
    "every day for 10 times",
    "every! 3 days",
)

_TOKEN = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"|(?P<time>[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?:\s*[ap]m\b)?|[0-9]{1,2}\s*[ap]m\b)"
    r"|(?P<ordinal>[0-9]{1,3}(?:st|nd|rd|th)\b)"
    r"|(?P<number>[0-9]+\b)"
    r"|(?P<word>[a-z]+!?)"
    r"|(?P<comma>[,&])"
    r"|(?P<space>\s+)"
)
_PART_ORDER = (
    "BYMONTH",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYDAY",
    "BYSETPOS",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
)
# RRULE text: NAME=VALUE parts, or a line such as RRULE:, EXDATE;TZID=...: or RDATE:.
_RULE_LINE = re.compile(r"\s*[A-Za-z-]+\s*[:;]")


@dataclass(frozen=True, slots=True)
class Phrase:
    """What a phrase means: ``rule`` is the RRULE without an end; ``mode`` is None when
    the phrase does not say; ``until`` (naive, the end of the day the phrase names, read
    in the series' zone) and ``count`` are None unless the phrase ends the series."""

    rule: str
    mode: Mode | None = None
    until: datetime | None = None
    count: int | None = None

    @property
    def full_rule(self) -> str:
        """The rule with the phrase's end written in (UNTIL as a bare date means the end
        of that day in the series' zone, like ``until``), for callers with no fields for
        it; the mode has no RRULE form."""
        if self.until is not None:
            return f"{self.rule};UNTIL={self.until:%Y%m%d}"
        if self.count is not None:
            return f"{self.rule};COUNT={self.count}"
        return self.rule

    def differs(self, name: str, value: object) -> bool:
        """Whether a separately given ``mode``, ``until`` or ``count`` says otherwise than
        the phrase; an aware ``until`` is compared by wall clock, as the phrase's date is
        read in the series' zone."""
        mine = getattr(self, name)
        if mine is None or value is None:
            return False
        if isinstance(value, datetime):
            value = value.replace(tzinfo=None)
        return mine != value


def is_rule_syntax(text: str) -> bool:
    """Whether ``text`` is RRULE syntax (a phrase has no ``=`` and no ``NAME:`` line)."""
    return "=" in text or any(_RULE_LINE.match(line) for line in text.splitlines())


def translate(text: str) -> Phrase | None:
    """The rule an English phrase means; None for RRULE text (see `is_rule_syntax`).

    Raises `RuleError` for a phrase it cannot read, suggesting the nearest one it can.
    """
    if not isinstance(text, str):
        raise RuleError("rule must be a string")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(f"rule is longer than {MAX_RULE_CHARS} characters")
    if is_rule_syntax(text):
        return None
    require_ascii_digits(text, "numbers in a phrase")
    words = " ".join(text.lower().split())
    if not words:
        raise RuleError("rule is empty")
    try:
        return _read(words)
    except _Unreadable as exc:
        raise RuleError(f"unrecognised rule {text.strip()!r}: {exc}{_suggestion(words)}") from None


class _Unreadable(Exception):
    """Why a phrase cannot be read (turned into a RuleError with a suggestion)."""


def _tokens(words: str) -> list[tuple[str, object]]:
    tokens: list[tuple[str, object]] = []
    pos = 0
    while pos < len(words):
        match = _TOKEN.match(words, pos)
        if match is None:
            raise _Unreadable(f"cannot read {words[pos : pos + 12]!r}")
        pos = match.end()
        kind, raw = match.lastgroup, match[0]
        if kind == "space":
            continue
        if kind == "number" and len(raw) > 9:
            raise _Unreadable(f"{raw} is too large a number")
        value: object = raw
        if kind in ("number", "ordinal"):
            value = int(re.match("[0-9]+", raw)[0])
        elif kind == "time":
            value = _clock(raw)
        elif kind == "date":
            try:
                value = date.fromisoformat(raw)
            except ValueError:
                raise _Unreadable(f"{raw} is not a date") from None
        tokens.append((kind, value))
    return tokens


def _clock(raw: str) -> tuple[int, int, int]:
    half = raw[-2:] if raw.endswith(("am", "pm")) else None
    numbers = [int(n) for n in re.findall("[0-9]+", raw)]
    hour, minute, second = ([*numbers, 0, 0])[:3]
    if half is not None:
        if not 1 <= hour <= 12:
            raise _Unreadable(f"{raw!r}: with am or pm the hour is from 1 to 12")
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise _Unreadable(f"{raw!r} is not a time of day")
    return hour, minute, second


class _Reader:
    """The tokens of one phrase, read left to right."""

    def __init__(self, tokens: list[tuple[str, object]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, ahead: int = 0) -> tuple[str, object]:
        at = self.pos + ahead
        return self.tokens[at] if at < len(self.tokens) else ("end", None)

    def word(self, ahead: int = 0) -> str | None:
        kind, value = self.peek(ahead)
        return value if kind == "word" else None

    def take(self) -> tuple[str, object]:
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.word() in words:
            self.pos += 1
            return True
        return False

    def more(self, starts) -> bool:
        """Consume a list separator (``,``, ``and``, ``, and``) if the token after it
        starts another item (``starts(token)``); a separator before a clause is left."""
        at = 1 if self.peek()[0] == "comma" else 0
        at += self.word(at) == "and"
        if at and starts(self.peek(at)):
            self.pos += at
            return True
        return False

    def done(self) -> bool:
        return self.pos >= len(self.tokens)


def _singular(word: str | None, table: dict) -> str | None:
    """``word`` or its singular if that is in ``table`` (mondays, weeks, weekdays)."""
    if word is None:
        return None
    if word in table:
        return word
    if word.endswith("s") and word[:-1] in table:
        return word[:-1]
    return None


def _read(words: str) -> Phrase:
    tokens = _tokens(words)
    mode = None
    if [v for _, v in tokens[:2]] == ["after", "completion"]:
        mode, tokens = Mode.COMPLETION, tokens[2:]
    if tokens and tokens[0][0] == "word" and tokens[0][1] in _ALIASES:
        tokens = _tokens(_ALIASES[tokens[0][1]]) + tokens[1:]
    reader = _Reader(tokens)
    start = reader.word()
    if start not in ("every", "every!"):
        raise _Unreadable('a phrase starts with "every" (or is a word such as "daily")')
    reader.take()
    if start == "every!":
        mode = Mode.COMPLETION
    freq, interval, parts = _what(reader)
    ends = _Ends(mode)
    ends.read(reader)
    if "BYSETPOS" in parts and any("," in value for value in ends.times.values()):
        # BYSETPOS picks among every (day, time) pair, not among days.
        raise _Unreadable("'first/last workday' takes one time of day")
    parts.update(ends.times)
    text = [f"FREQ={freq}"] + ([f"INTERVAL={interval}"] if interval != 1 else [])
    text += [f"{name}={parts[name]}" for name in _PART_ORDER if name in parts]
    return Phrase(";".join(text), ends.mode, ends.until, ends.count)


def _what(reader: _Reader) -> tuple[str, int, dict[str, str]]:
    """What repeats: (FREQ, INTERVAL, BYxxx parts)."""
    count = _count(reader)
    unit = _singular(reader.word(), _UNITS)
    if unit is not None:
        reader.take()
        freq, per_unit = _UNITS[unit]
        if reader.accept("on"):
            reader.accept("the")
            target_freq, parts = _target(reader)
            if target_freq != freq:
                raise _Unreadable(f"'every ... {unit} on' needs a day of the {unit}")
            return freq, (1 if count is None else count) * per_unit, parts
        return freq, (1 if count is None else count) * per_unit, {}
    if count is None and reader.done():
        raise _Unreadable("every what?")
    freq, parts = _target(reader)
    return freq, 1 if count is None else count, parts


def _count(reader: _Reader) -> int | None:
    """An interval before a unit or weekday: ``other``, ``3``, ``three``; a positive
    ordinal directly before a unit (``every third day``) also counts."""
    if reader.accept("other"):
        return 2
    kind, value = reader.peek()
    following = reader.word(1)
    is_unit = _singular(following, _UNITS) is not None
    is_day = _singular(following, _WEEKDAYS) or _singular(following, _GROUPS)
    if kind == "number" or value in _NUMBERS:
        if is_unit or is_day:
            reader.take()
            return value if kind == "number" else _NUMBERS[value]
        return None
    if (kind == "ordinal" or value in _ORDINALS) and is_unit and reader.word(2) != "of":
        reader.take()
        return value if kind == "ordinal" else _ORDINALS[value]
    return None


def _target(reader: _Reader) -> tuple[str, dict[str, str]]:
    """A day pattern after ``every`` (or ``on``): (its natural FREQ, BYxxx parts)."""
    kind, value = reader.peek()
    if _is_day(reader.peek()):
        return "WEEKLY", {"BYDAY": ",".join(DAY_CODES[d] for d in _weekday_list(reader))}
    if value in _MONTHS:
        months = _month_list(reader)
        kind, value = reader.peek()
        if kind in ("number", "ordinal"):  # jan 27th
            reader.take()
            return "YEARLY", _month_days(months, [value])
        return "YEARLY", {"BYMONTH": _csv(months)}
    if kind == "number" and reader.word(1) in _MONTHS:  # 27 january
        reader.take()
        return "YEARLY", _month_days(_month_list(reader), [value])
    return _ordinal_target(reader)


def _is_day(token: tuple[str, object]) -> bool:
    kind, value = token
    return kind == "word" and bool(_singular(value, _WEEKDAYS) or _singular(value, _GROUPS))


def _weekday_list(reader: _Reader) -> list[int]:
    days: set[int] = set()
    while True:
        if not _is_day(reader.peek()):
            raise _Unreadable(f"expected a day of the week, not {_shown(reader.peek())}")
        word = reader.take()[1]
        name = _singular(word, _WEEKDAYS)
        days.update([_WEEKDAYS[name]] if name else _GROUPS[_singular(word, _GROUPS)])
        if not reader.more(_is_day):
            return sorted(days)


def _is_month(token: tuple[str, object]) -> bool:
    return token[0] == "word" and token[1] in _MONTHS


def _month_list(reader: _Reader) -> list[int]:
    months: set[int] = set()
    while True:
        if not _is_month(reader.peek()):
            raise _Unreadable(f"expected a month, not {_shown(reader.peek())}")
        months.add(_MONTHS[reader.take()[1]])
        if not reader.more(_is_month):
            return sorted(months)


def _is_ordinal(token: tuple[str, object]) -> bool:
    kind, value = token
    return kind == "ordinal" or (kind == "word" and (value in _ORDINALS or value == "last"))


def _ordinal(reader: _Reader) -> int:
    """``3rd``, ``third``, ``last``, ``2nd last``, ``second last``: n, negative when
    counted from the end."""
    if not _is_ordinal(reader.peek()):
        raise _Unreadable(f"cannot read {_shown(reader.peek())} here")
    kind, value = reader.take()
    if value == "last":
        return -1
    n = value if kind == "ordinal" else _ORDINALS[value]
    if n < 1:
        raise _Unreadable("ordinals start at 1st")
    return -n if reader.accept("last") else n


def _ordinal_target(reader: _Reader) -> tuple[str, dict[str, str]]:
    """``1st and 15th``, ``last day``, ``first monday and last friday``, ``2nd workday``,
    each optionally ``of the month``, ``of march and october`` or ``of the year``."""
    items: list[tuple[int, int | None]] = []  # (n, weekday or None)
    numeric_only = True
    while True:
        numeric_only = numeric_only and reader.peek()[0] == "ordinal"
        n = _ordinal(reader)
        day = _singular(reader.word(), _WEEKDAYS)
        if day is not None:
            reader.take()
            # "1st and 3rd monday": the weekday belongs to the ordinals before it too.
            items = [(m, d if d is not None else _WEEKDAYS[day]) for m, d in items]
        items.append((n, None if day is None else _WEEKDAYS[day]))
        if not reader.more(_is_ordinal):
            break
    group = _singular(reader.word(), _GROUPS)
    noun = group is not None or reader.word() in ("day", "days")
    if noun:
        reader.take()
    scope, months = _scope(reader)
    freq = "YEARLY" if scope != "month" or months else "MONTHLY"
    parts = {"BYMONTH": _csv(months)} if months else {}
    ns = [n for n, _ in items]
    with_day = [d for _, d in items if d is not None]
    if with_day:
        if noun or len(with_day) < len(items):
            raise _Unreadable("say a weekday after every ordinal, as in 'first monday'")
        codes = sorted(set(items), key=lambda item: (item[1], item[0] < 0, abs(item[0])))
        parts["BYDAY"] = ",".join(f"{n}{DAY_CODES[d]}" for n, d in codes)
    elif group:
        parts["BYDAY"] = ",".join(DAY_CODES[d] for d in _GROUPS[group])
        parts["BYSETPOS"] = _csv(ns)
    elif noun or numeric_only:
        if scope == "year" and not months:
            parts["BYYEARDAY"] = _csv(ns)
        else:
            parts.update(_month_days(months, ns, keep_months=False))
    else:
        raise _Unreadable("say which day, as in 'every last day' or 'every last friday'")
    return freq, parts


def _scope(reader: _Reader) -> tuple[str, list[int]]:
    """``of the month`` (the default), ``of the year``, ``of march and october``."""
    if not (reader.accept("of") or reader.accept("in")):
        return "month", []
    reader.accept("the", "every", "each")
    if reader.accept("month"):
        return "month", []
    if reader.accept("year"):
        return "year", []
    return "months", _month_list(reader)


def _month_days(months: list[int], days: list[int], *, keep_months: bool = True) -> dict:
    for day in days:
        if not 1 <= abs(day) <= 31:
            raise _Unreadable(f"a month has no day {day}")
        if months and day > 0 and all(day > _MONTH_DAYS[m - 1] for m in months):
            raise _Unreadable(f"{MONTH_NAMES[months[0] - 1].title()} has no day {day}")
    parts = {"BYMONTHDAY": _csv(days)}
    if months and keep_months:
        parts = {"BYMONTH": _csv(months), **parts}
    return parts


def _csv(values) -> str:
    return ",".join(map(str, sorted(set(values), key=lambda n: (n < 0, abs(n)))))


class _Ends:
    """The clauses after what repeats: times, the end, the mode."""

    def __init__(self, mode: Mode | None) -> None:
        self.mode = mode
        self.times: dict[str, str] = {}
        self.until: datetime | None = None
        self.count: int | None = None

    def read(self, reader: _Reader) -> None:
        seen: set[str] = set()
        while not reader.done():
            if reader.peek()[0] == "comma":
                reader.take()
            kind, word = reader.peek()
            clause = "for" if kind == "number" else word
            if clause in seen:
                raise _Unreadable(f"{_shown((kind, word))} is said twice")
            seen.add(str(clause))
            if reader.accept("at"):
                self._times(reader)
            elif reader.accept("until"):
                kind, value = reader.take()
                if kind != "date":
                    raise _Unreadable("'until' takes a date: YYYY-MM-DD")
                self.until = datetime(value.year, value.month, value.day, 23, 59, 59)
            elif clause == "for":
                reader.accept("for")
                kind, value = reader.take()
                if kind != "number" or value < 1:
                    raise _Unreadable("say 'for N times' with N from 1")
                if not reader.accept("times", "time", "occurrences"):
                    raise _Unreadable("say 'for N times'")
                self.count = value
            elif reader.accept("after"):
                if not reader.accept("completion"):
                    raise _Unreadable("did you mean 'after completion'?")
                self.mode = Mode.COMPLETION
            else:
                raise _Unreadable(f"cannot read {_shown(reader.peek())} here")
        if self.until is not None and self.count is not None:
            raise _Unreadable("a series ends either 'until' a date or 'for N times', not both")

    def _times(self, reader: _Reader) -> None:
        times = set()
        while True:
            if not _is_time(reader.peek()):
                raise _Unreadable(
                    f"expected a time such as 7am or 18:30, not {_shown(reader.peek())}"
                )
            kind, value = reader.take()
            if kind == "time":
                times.add(value)
            elif kind == "number":
                times.add((value, 0, 0))
            else:
                times.add((12 if value == "noon" else 0, 0, 0))
            if not reader.more(_is_time):
                break
        hours, minutes, seconds = (sorted({t[i] for t in times}) for i in range(3))
        if len(times) != len(hours) * len(minutes) * len(seconds):
            raise _Unreadable(
                "several times must pair every hour with every minute given, as in "
                "'at 9:00 and 17:00' or 'at 9:00, 9:30, 17:00 and 17:30'"
            )
        self.times = {"BYHOUR": _csv(hours), "BYMINUTE": _csv(minutes), "BYSECOND": _csv(seconds)}


def _is_time(token: tuple[str, object]) -> bool:
    kind, value = token
    return (
        kind == "time"
        or (kind == "number" and value <= 23)
        or (kind == "word" and value in ("noon", "midnight"))
    )


def _shown(token: tuple[str, object]) -> str:
    kind, value = token
    if kind == "end":
        return "the end"
    if kind == "comma":
        return "','"
    if kind == "time":
        return "{:02d}:{:02d}".format(*value[:2])
    return repr(str(value))


def vocabulary() -> set[str]:
    """Every word the phrasebook knows, plurals of days and units included."""
    plurals = [f"{word}s" for word in (*DAY_NAMES, *_GROUPS, *_UNITS)]
    return {
        *plurals,
        *_WEEKDAYS,
        *_GROUPS,
        *_MONTHS,
        *_UNITS,
        *_NUMBERS,
        *_ORDINALS,
        *_ALIASES,
        *_KEYWORDS,
    }


def _suggestion(words: str) -> str:
    """``: did you mean "..."?`` with misspelt words replaced by the nearest known ones
    when that reads, else the nearest example phrase."""
    import difflib  # only on the error path

    vocabulary_ = vocabulary()
    known = sorted(vocabulary_)
    fixed = []
    for token in re.split(r"(\W+)", words):
        if token.isalpha() and token not in vocabulary_:
            close = difflib.get_close_matches(token, known, n=1, cutoff=0.7)
            token = close[0] if close else token
        fixed.append(token)
    guess = "".join(fixed)
    if guess != words:
        try:
            _read(guess)
            return f': did you mean "{guess}"?'
        except _Unreadable:
            pass
    nearest = difflib.get_close_matches(words, EXAMPLES, n=1, cutoff=0.0)
    return f'; a phrase such as "{nearest[0]}" or an RRULE such as FREQ=WEEKLY;BYDAY=MO'
