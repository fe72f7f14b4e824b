"""The one exception the recurrence package raises for anything wrong with a rule."""

from __future__ import annotations


class RuleError(ValueError):
    """A recurrence rule (or a date given with it) that is invalid or unsupported.

    The message names the problem in words fit for an API error response; ``field`` hints
    at which input was at fault (``"rule"``, ``"dtstart"``, ``"after"``, ``"until"`` ...).
    """

    def __init__(self, message: str, *, field: str = "rule") -> None:
        super().__init__(message)
        self.field = field


class NeverOccurs(RuleError):
    """A valid rule without any occurrence: at all, or from the start it was given (so
    that `search.first_after` can tell "no occurrence" from "invalid")."""


def require_ascii_digits(text: str, what: str) -> None:
    """Refuse numbers written with other digits than 0-9 (Arabic-Indic, fullwidth,
    superscript, circled ...): Python's ``int()`` and regex ``\\d`` read many of them, so
    without this a rule would be stored as written yet mean something only this parser
    reads. ``what`` names the part in the message."""
    for char in text:
        if char.isnumeric() and not "0" <= char <= "9":
            raise RuleError(f"{what} must be written with the digits 0-9, not {char!r}")
