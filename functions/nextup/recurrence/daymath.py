"""Integer calendar arithmetic on proleptic Gregorian day ordinals, and `floor_sum`.

Day ordinals are ``date.toordinal()`` values (day 1 is Monday 0001-01-01), so a day's
weekday is ``(ordinal + 6) % 7`` with 0 = Monday, as in `datetime` and python-dateutil.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

_LENGTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MONTH_LENGTHS = (_LENGTHS, (31, 29, *_LENGTHS[2:]))
MONTH_STARTS = tuple(
    tuple(sum(lengths[:i]) for i in range(13)) for lengths in MONTH_LENGTHS
)  # day of year (0-based) each month starts on, plus the year length


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def year_length(year: int) -> int:
    return 366 if is_leap(year) else 365


@lru_cache(maxsize=4096)
def jan1(year: int) -> int:
    """Ordinal of 1 January of ``year``."""
    return date(year, 1, 1).toordinal()


def weekday(ordinal: int) -> int:
    return (ordinal + 6) % 7


def year_of(ordinal: int) -> int:
    return date.fromordinal(ordinal).year


def month_of_doy(leap: bool, doy: int) -> int:
    """Month (1-12) of a 0-based day of year; days past the year's end are January."""
    starts = MONTH_STARTS[leap]
    if doy >= starts[12]:
        return 1
    month = doy // 31 + 1  # never past the right month, at most one short
    return month + 1 if doy >= starts[month] else month


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """Sum of ``(a * i + b) // m`` for ``0 <= i < n`` in O(log) steps (``m > 0``)."""
    total = 0
    if n <= 0:
        return 0
    if not 0 <= a < m:
        q, a = divmod(a, m)
        total += q * (n * (n - 1) // 2)
    if not 0 <= b < m:
        q, b = divmod(b, m)
        total += q * n
    while True:
        if a >= m:
            total += (n * (n - 1) // 2) * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            return total
        n, b = divmod(top, m)
        m, a = a, m


def count_in_runs(n: int, step: int, first: int, modulus: int, runs: tuple) -> int:
    """How many of ``first + step * i`` (``0 <= i < n``) fall, modulo ``modulus``, in one of
    the half-open ``runs`` ``(low, high)`` (disjoint, inside ``[0, modulus)``).

    Uses ``[x mod M < r] = x // M - (x - r) // M`` summed with `floor_sum`.
    """
    if n <= 0:
        return 0
    total = 0
    for low, high in runs:
        total += floor_sum(n, modulus, step, first - low) - floor_sum(
            n, modulus, step, first - high
        )
    return total


def runs_of(members, modulus: int) -> tuple[tuple[int, int], ...]:
    """Maximal half-open runs of consecutive integers in ``members`` (within the modulus)."""
    runs: list[tuple[int, int]] = []
    for value in sorted(members):
        if runs and runs[-1][1] == value:
            runs[-1] = (runs[-1][0], value + 1)
        else:
            runs.append((value, value + 1))
    assert not runs or runs[-1][1] <= modulus
    return tuple(runs)
