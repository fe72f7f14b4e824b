"""Choosing dead letters to re-drive, and the event each becomes again. Pure.

A dead letter is a document of the dead-letter mirror (`nextup_dev.deadletters`). Re-driving
one posts its event back onto the broker as it was first sent: the same `source` and `id`
(so a function that did handle it after all recognises it by its receipt), without the
`knativeerror*` extensions the dispatcher added, and with its data fixed if asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nextup.envelope import CloudEvent

ERROR_EXTENSIONS = ("knativeerrorcode", "knativeerrordest", "knativeerrordata")


@dataclass(frozen=True)
class Selection:
    """Which dead letters: by event id, type, status code and time (epoch seconds, the time
    it was dead-lettered), or all. Nothing given selects nothing."""

    id: str = ""
    type: str = ""
    status: int | None = None
    since: float | None = None
    until: float | None = None
    all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.id or self.type or self.status or self.since or self.until or self.all)

    def matches(self, letter: dict[str, Any]) -> bool:
        if self.empty:
            return False
        attributes = letter.get("attributes", {})
        if self.id and attributes.get("id") != self.id:
            return False
        if self.type and attributes.get("type") != self.type:
            return False
        if self.status is not None and letter.get("error", {}).get("status") != self.status:
            return False
        at = letter.get("at")
        if self.since is not None and (at is None or at < self.since):
            return False
        return not (self.until is not None and (at is None or at > self.until))


def parse_time(text: str) -> float:
    """An ISO 8601 time (a naive one is local time), or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def select(letters: list[dict[str, Any]], selection: Selection) -> list[dict[str, Any]]:
    return [letter for letter in letters if selection.matches(letter)]


def newest_per_event(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first (in a newest-first list, the newest) letter of each event, by source and
    id: the same event dead-lettered twice is re-driven once."""
    unique: dict[tuple[Any, Any], dict[str, Any]] = {}
    for letter in letters:
        attributes = letter.get("attributes", {})
        unique.setdefault((attributes.get("source"), attributes.get("id")), letter)
    return list(unique.values())


def event_of(letter: dict[str, Any], data: Any = None) -> CloudEvent:
    """The event a dead letter carries, as it was sent; `data` replaces its data."""
    attributes = {
        k: v for k, v in letter["attributes"].items() if k not in ERROR_EXTENSIONS and v is not None
    }
    attributes.setdefault("specversion", "1.0")
    attributes.setdefault("datacontenttype", "application/json")
    return CloudEvent(attributes, letter.get("data") if data is None else data)
