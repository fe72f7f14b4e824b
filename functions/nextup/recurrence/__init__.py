"""Next occurrences of RFC 5545 recurrence rules, at a cost independent of a series' age.

Public API::

    next_occurrence(rule, dtstart, after) -> datetime | None
    first_after(rule, dtstart) -> datetime | None   # None: never occurs from dtstart
    parse_rule(rule) -> Rule          # validated, compiled, cached by text
    next_due(rule, *, series_start, due_at, completed_at, mode, until=None, count=None,
             index=0) -> datetime | None
    translate(text) -> Phrase | None  # English phrase -> RRULE (None: already an RRULE)
    explain(rule, *, start=None, tz=None) -> str     # a rule in English
    upcoming(rule, *, start, count, after=None) -> list[datetime]
    Mode                              # SCHEDULE | COMPLETION
    RuleError                         # ValueError with a message fit for an API error

Wherever a rule is taken, an English phrase is too (``every 2nd tuesday at 9:30``,
``every! 3 days until 2027-06-30``): `phrases` is the one place that reads English, and
`parse_rule` compiles a phrase as the RRULE it means.

Semantics are python-dateutil's: for every rule accepted, ``next_occurrence`` returns the
same instant as ``rrulestr(rule, dtstart=dtstart).after(after)`` (``after`` compared as
an instant), returned in dtstart's zone and normalised (a wall time in a DST gap comes
back as the real instant). Like dateutil, series step in wall-clock time, so a daily
09:00 stays at 09:00 across DST changes; a wall time in a gap reads with the offset from
before the gap, an ambiguous one as its first occurrence (RFC 5545 3.3.5).

Values are normalised as follows (the differential tests give dateutil the normalised
rule, since it would reject or misread the originals):

* UNTIL: a value ending in Z is UTC; a floating date-time is read in dtstart's zone; a
  bare date means the end of that day (23:59:59, inclusive) in dtstart's zone; all are
  converted to UTC, which dateutil requires with an aware DTSTART.
* EXDATE/RDATE: floating values are read in dtstart's zone, ``TZID=`` in the named zone,
  bare dates as midnight (like dateutil's parser).
* WKST defaults to MO (dateutil's default follows ``calendar.firstweekday()``).

Refused with `RuleError`, in well under 10 ms: malformed or unknown parts, duplicated
parts, out-of-range values, what RFC 5545 forbids (BYWEEKNO outside YEARLY, ordinal BYDAY
outside MONTHLY/YEARLY, COUNT with UNTIL, ...), FREQ=SECONDLY, BYEASTER, EXRULE, DTSTART
inside the rule, BYDAY mixing plain and ordinal days (dateutil intersects them), and every
rule that can never occur, including those that only never occur from a given start
(``FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29`` from 2021). Sizes are bounded (see
`limits`).

Numbers are ASCII digits only: Arabic-Indic, fullwidth, superscript ... digits are
refused, not read as numbers. Starts may carry any tzinfo, python-dateutil's (``gettz``,
``tzutc``, ``tzoffset``, ``tzlocal``) included; caches key the unhashable ones by identity.

How it is fast (the modules, in the order a call uses them):

* `phrases` turns an English phrase into RRULE text (`explain` turns rules back into
  English and lists upcoming occurrences; neither is on the engine's path).
* `syntax` parses and validates the text; `feasibility` proves the rule can occur at all
  (`errors.NeverOccurs`, which `search.first_after` turns into "no occurrence").
* `pattern` writes out every default dateutil would derive from DTSTART, so the series
  can be resumed from any later period in phase with its interval (`timeline` numbers
  the periods on the naive wall clock, as dateutil steps).
* `search` picks that resumption point (the *anchor*) just before ``after``; `engines`
  count the occurrences before it for COUNT and skip empty periods, by arithmetic for
  patterns that repeat weekly (`cyclic`, with `daymath.floor_sum`) and by memoised
  per-year plans for calendar patterns (`calendar_plans`); `expand` says which
  occurrences a period holds (BYWEEKNO numbered the way dateutil numbers it, quirks
  included). Then occurrences are generated from the anchor until one is after
  ``after``: typically one or two periods.

python-dateutil remains the reference: the differential tests compare thousands of
generated rules, starts and zones against its brute force, instant for instant.
"""

from typing import TYPE_CHECKING

from nextup.recurrence.errors import RuleError
from nextup.recurrence.mode import Mode

if TYPE_CHECKING:
    from nextup.recurrence.due import next_due
    from nextup.recurrence.explain import explain, upcoming
    from nextup.recurrence.model import Rule
    from nextup.recurrence.phrases import Phrase, translate
    from nextup.recurrence.search import first_after, next_occurrence
    from nextup.recurrence.syntax import parse_rule

__all__ = [
    "Mode",
    "Phrase",
    "Rule",
    "RuleError",
    "explain",
    "first_after",
    "next_due",
    "next_occurrence",
    "parse_rule",
    "translate",
    "upcoming",
]

# The engine costs ~40-90 ms to import: every function imports this package for `Mode`
# and `RuleError`, only the ones that parse or compute a rule pay for the rest, on first use.
_LAZY = {
    "next_due": "nextup.recurrence.due",
    "Rule": "nextup.recurrence.model",
    "next_occurrence": "nextup.recurrence.search",
    "first_after": "nextup.recurrence.search",
    "parse_rule": "nextup.recurrence.syntax",
    "Phrase": "nextup.recurrence.phrases",
    "translate": "nextup.recurrence.phrases",
    "explain": "nextup.recurrence.explain",
    "upcoming": "nextup.recurrence.explain",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
