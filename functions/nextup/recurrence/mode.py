"""How a series repeats: its own module, so the event models can name it without
importing the recurrence engine (which only schedule-next needs, and only on its first
occurrence)."""

from enum import StrEnum


class Mode(StrEnum):
    """How the next task of a series is dated.

    `schedule`: on the series' fixed schedule, the next occurrence after the later of the
    due date and the completion; missed occurrences are skipped, never piled up.

    `completion`: from the completion (Todoist ``every!``, Things "after completion"): the
    rule restarts at the moment the task was completed.
    """

    SCHEDULE = "schedule"
    COMPLETION = "completion"
