"""Where everything lives in the single table: partition and sort keys, the due key.

Partitions are users: every task and reminder of a user shares ``pk = user_id``, so a
caller naming a user can only ever reach that user's items, and a task id means something
only within its user's partition. Receipts are one per event (`source` + `id`, hashed),
each in a partition of its own that cannot be mistaken for a user's, because user ids
never contain ``#`` (`nextup.fields.ID_PATTERN`).

    pk              sk                  data      due                              expires_at
    <user_id>       task#<task_id>      Task      -                                -
    <user_id>       reminder#<task_id>  Reminder  <when>#<us>#<user>#<task>        -
                                                  (while pending or unannounced)
    #event#<key>    receipt             Receipt   -                                TTL epoch
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from nextup.fields import ID_PATTERN

TASK = "task#"
REMINDER = "reminder#"
RECEIPT_PK = "#event#"
RECEIPT_SK = "receipt"
# Partition keys are at most 2048 bytes in DynamoDB; receipt keys are hashes in practice.
MAX_RECEIPT_KEY = 512

_ID = re.compile(ID_PATTERN)


def user_pk(user_id: str) -> str:
    """The partition of a user; ValueError for anything that is not a user id."""
    if not isinstance(user_id, str) or not _ID.fullmatch(user_id):
        raise ValueError(f"not a user id: {user_id!r:.80}")
    return user_id


def task_id_part(task_id: str) -> str:
    if not isinstance(task_id, str) or not _ID.fullmatch(task_id):
        raise ValueError(f"not a task id: {task_id!r:.80}")
    return task_id


def task_sk(task_id: str) -> str:
    return TASK + task_id_part(task_id)


def reminder_sk(task_id: str) -> str:
    return REMINDER + task_id_part(task_id)


def receipt_pk(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_RECEIPT_KEY:
        raise ValueError(f"a receipt key is 1 to {MAX_RECEIPT_KEY} characters")
    return RECEIPT_PK + key


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _instant(moment: datetime) -> str:
    at = as_utc(moment)
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"
        f"#{at.microsecond:06d}"
    )


def due_key(remind_at: datetime, user_id: str, task_id: str) -> str:
    """The due-index sort key: UTC second, microseconds, then user and task as tiebreak.

    Fixed-width and unique, so string order is time order and every page boundary is exact.
    """
    return f"{_instant(remind_at)}#{user_id}#{task_id}"


def due_bound(until: datetime) -> str:
    """The largest due key at `until`: ``~`` sorts after every character of an id."""
    return f"{_instant(until)}#~"
