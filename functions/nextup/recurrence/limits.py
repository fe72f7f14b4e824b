"""Every bound the recurrence package enforces, in one place.

The bounds keep each call cheap and finite whatever a caller sends: rule text, list sizes,
COUNT and INTERVAL, the dates accepted, and how far ahead searches may look.
"""

from __future__ import annotations

from nextup.recurrence.model import Freq

MAX_RULE_CHARS = 2048
MAX_COUNT = 1_000_000
MAX_DATES = 100  # EXDATE and RDATE values together
MAX_TIMES_PER_DAY = 1440  # BYHOUR x BYMINUTE x BYSECOND combinations

MAX_INTERVAL = {
    Freq.YEARLY: 100,
    Freq.MONTHLY: 1200,
    Freq.WEEKLY: 520,
    Freq.DAILY: 3660,
    Freq.HOURLY: 8784,
    Freq.MINUTELY: 10080,
}

# Most values a BYxxx part may list (after removing duplicates).
MAX_VALUES = {
    "BYSECOND": 60,
    "BYMINUTE": 60,
    "BYHOUR": 24,
    "BYDAY": 64,
    "BYMONTHDAY": 62,
    "BYYEARDAY": 128,
    "BYWEEKNO": 64,
    "BYMONTH": 12,
    "BYSETPOS": 64,
}

# Series start and "after" dates; UNTIL, EXDATE and RDATE may reach further.
MIN_YEAR, MAX_YEAR = 1800, 2999
MIN_DATE_VALUE_YEAR, MAX_DATE_VALUE_YEAR = 1800, 9999

# A rule with no occurrence this many years after its start is refused as never occurring.
FEASIBILITY_YEARS = 400
# python-dateutil stops generating after this year; searches stop there too.
LAST_YEAR = 9999
