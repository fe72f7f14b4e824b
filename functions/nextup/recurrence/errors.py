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
