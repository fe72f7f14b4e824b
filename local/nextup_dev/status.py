"""What flows through `nextup dev`, for the terminal: one line per happening, and a table
per Trigger (matched, delivered, retried, dead-lettered, dropped, replies).

The dispatcher runs in its own process. It counts what happens per Trigger and sends the
counts as one JSON line per interval (`Tally`), not one line per event: at a thousand
events a second, writing and parsing a line per happening cost more than delivering.
Happenings a person should see go as `Flow` lines too, for display only; the chatty ones
(events in, delivered, replies) through a `Sampler` that lets a few per second through and
says how many it held back. Formatting is pure, so it is tested without a terminal.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

# The one vocabulary of `nextup dev`: the terminal's lines and table and GET /status use
# these words (in JSON with `_` for `-`).
#
# Events onto the broker topic, counted by the ingress: `posted` by a producer (you, the
# todo app, `nextup emit`), a PingSource `tick`, `emitted` by a function to its K_SINK;
# `unrouted` counts the accepted ones no Trigger's filter matches (nothing receives them).
# Replies a function answered with are published by the dispatcher and counted per Trigger.
EVENT_COUNTS = {"posted": "posted", "tick": "ticks", "emitted": "emitted", "unrouted": "unrouted"}
# Per Trigger: `matched` its filter, `delivered` (a 2xx), `retried` (an attempt failed and
# will be tried again), `dead-lettered` (failed for good, sent to the dead-letter sink),
# `dropped` (failed for good with no dead-letter sink: gone), `reply` (the answer carried an
# event, published onto the broker). Line word -> count name.
TRIGGER_COUNTS = {
    "matched": "matched",
    "delivered": "delivered",
    "retried": "retried",
    "dead-lettered": "dead_lettered",
    "dropped": "dropped",
    "reply": "replies",
}
COLUMNS = tuple(TRIGGER_COUNTS.values())
# The runtime's own news, shown but not counted: `ready`, `error`, `cold`, `process`, `mail`,
# `sent`, `failed`, `mirrored`, `lagging`, `caught-up`. Committed levels travel in `Tally`s.


@dataclass(frozen=True)
class Flow:
    kind: str
    trigger: str | None = None
    type: str | None = None
    id: str | None = None
    status: int | None = None
    detail: str | None = None
    ms: float | None = None
    at: float = field(default_factory=time.time)

    def encode(self) -> str:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps({k: v for k, v in fields.items() if v is not None})

    @classmethod
    def decode(cls, line: str) -> Flow | None:
        """A Flow from a dispatcher's stdout line; None for anything else it printed."""
        if not line.startswith("{"):
            return None
        try:
            raw = json.loads(line)
        except ValueError:
            return None
        if not isinstance(raw, dict) or "kind" not in raw:
            return None
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**known)


def describe(flow: Flow) -> str:
    """One line for a person: when, what happened, where, to which event."""
    clock = time.strftime("%H:%M:%S", time.localtime(flow.at))
    parts = [clock, f"{flow.kind:<9}"]
    if flow.trigger:
        parts.append(flow.trigger)
    if flow.type:
        parts.append(flow.type)
    if flow.id:
        parts.append(f"id={flow.id}")
    if flow.status is not None:
        parts.append(f"-> {flow.status}")
    if flow.ms is not None:
        parts.append(f"({flow.ms:.0f} ms)")
    if flow.detail:
        parts.append(flow.detail)
    return " ".join(parts)


class Board:
    """What came in through the ingress, and the counts per Trigger."""

    def __init__(self, triggers: dict[str, str] | None = None) -> None:
        # Trigger name -> the broker topic it reads.
        self.topics = dict(triggers or {})
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in self.topics}
        self.events: Counter[str] = Counter()
        self.committed: dict[str, int] = {}
        self.changed = False

    def record(self, flow: Flow) -> None:
        event = EVENT_COUNTS.get(flow.kind)
        if event is not None:
            self.events[event] += 1
        elif flow.trigger and flow.kind in TRIGGER_COUNTS:
            self.counts.setdefault(flow.trigger, Counter())[TRIGGER_COUNTS[flow.kind]] += 1
        else:
            return
        self.changed = True

    def add(self, tally: dict[str, object]) -> None:
        """Counts and committed levels from a dispatcher's `Tally` line."""
        counts = tally.get("counts") or {}
        assert isinstance(counts, dict)
        for trigger, kinds in counts.items():
            board = self.counts.setdefault(trigger, Counter())
            for kind, n in kinds.items():
                if kind in COLUMNS:
                    board[kind] += n
                    self.changed = True
        committed = tally.get("committed") or {}
        assert isinstance(committed, dict)
        self.committed.update(committed)

    def total(self, kind: str) -> int:
        return sum(counts[kind] for counts in self.counts.values())

    def drained(self, records: dict[str, int]) -> bool:
        """Whether every Trigger is done with every record on its topic (`records`: topic ->
        its end offsets, read from Kafka). A Trigger counts what happened to an event before
        it commits past it, and both travel in the same Tally line, so once this holds
        every count of those records is on the board."""
        return all(
            self.committed.get(name, 0) >= records.get(topic, 0)
            for name, topic in self.topics.items()
        )

    def snapshot(self, records: dict[str, int] | None = None) -> dict[str, object]:
        """The board as JSON (GET /status). With `records` (topic -> its end offsets) also
        how many records the broker topics hold and whether all are dispatched."""
        snapshot: dict[str, object] = {
            "events": {
                **{name: self.events[name] for name in EVENT_COUNTS.values()},
                "replies": self.total("replies"),
            },
            "triggers": {
                name: {
                    **{c: counts[c] for c in COLUMNS},
                    "committed": self.committed.get(name, 0),
                }
                for name, counts in self.counts.items()
            },
        }
        if records is not None:
            snapshot["records"] = sum(records.values())
            snapshot["drained"] = self.drained(records)
        return snapshot

    def table(self) -> str:
        """Events in, and one row per Trigger that saw any; idle Triggers are only counted."""
        busy = {name: counts for name, counts in self.counts.items() if any(counts.values())}
        width = max([len("trigger"), *map(len, busy)])
        headings = {c: c.replace("_", "-") for c in COLUMNS}
        cells = {c: max(len(headings[c]), 5) for c in COLUMNS}
        header = f"{'trigger':<{width}}  " + "  ".join(
            f"{headings[c]:>{cells[c]}}" for c in COLUMNS
        )
        events = ", ".join(f"{name} {self.events[name]}" for name in EVENT_COUNTS.values())
        lines = [f"events onto the broker: {events}", header]
        for name, counts in busy.items():
            row = "  ".join(f"{counts[c]:>{cells[c]}}" for c in COLUMNS)
            lines.append(f"{name:<{width}}  {row}")
        idle = len(self.counts) - len(busy)
        if idle:
            lines.append(f"({idle} more triggers, nothing matched yet)")
        self.changed = False
        return "\n".join(lines)


class Tally:
    """What happened per Trigger since the last flush, and each Trigger's committed level:
    the dispatcher's report to `nextup dev`, one JSON line per interval."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.committed: dict[str, int] = {}
        self.hidden = 0

    def add(self, trigger: str, kind: str) -> None:
        self.counts[trigger][kind] += 1

    def level(self, trigger: str, committed: int) -> None:
        self.committed[trigger] = committed

    def flush(self) -> str | None:
        """The line to send, None when nothing happened; starts a new interval."""
        if not self.counts and not self.committed and not self.hidden:
            return None
        line = json.dumps(
            {
                "tally": {
                    "counts": {t: dict(c) for t, c in self.counts.items()},
                    "committed": self.committed,
                    "hidden": self.hidden,
                }
            }
        )
        self.counts.clear()
        self.committed = {}
        self.hidden = 0
        return line

    @staticmethod
    def decode(line: str) -> dict[str, object] | None:
        if not line.startswith('{"tally"'):
            return None
        try:
            tally = json.loads(line)["tally"]
        except (ValueError, KeyError, TypeError):
            return None
        return tally if isinstance(tally, dict) else None


class Sampler:
    """At most `per_second` lines a second get through (a token bucket); the rest are
    counted, so the terminal can say how many it did not show."""

    def __init__(self, per_second: float = 20.0, clock=time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self.tokens = per_second
        self.last = clock()
        self.hidden = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.per_second, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.hidden += 1
        return False

    def take_hidden(self) -> int:
        hidden, self.hidden = self.hidden, 0
        return hidden
