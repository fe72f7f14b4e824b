"""What flows through `nextup dev`, for the terminal: one line per happening, and a table
per Trigger (events in, delivered, retried, dead-lettered, replies).

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

# What a Flow can say. `in`: accepted by the ingress; `matched`: passed a Trigger's filter;
# `delivered`: a 2xx; `retried`: an attempt failed and will be retried; `dead`: sent to the
# dead-letter sink; `dropped`: failed with no dead-letter sink; `reply`: a reply event was
# published onto the broker; `ready`/`error`/`cold`/`process`/`tick`/`mail`/`mirrored`/
# `lagging`/`caught-up`: the runtime's own news. Committed levels travel in `Tally` lines.
KINDS = ("in", "matched", "delivered", "retried", "dead", "dropped", "reply")
COLUMNS = ("matched", "delivered", "retried", "dead", "dropped", "reply")
HEADINGS = {
    "matched": "in",
    "delivered": "delivered",
    "retried": "retried",
    "dead": "dead-lettered",
    "dropped": "dropped",
    "reply": "replies",
}


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
    """Counts per Trigger, and what came in through the ingress."""

    def __init__(self, triggers: tuple[str, ...] = ()) -> None:
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in triggers}
        self.ingress = 0
        self.committed: dict[str, int] = {}
        self.changed = False

    def record(self, flow: Flow) -> None:
        if flow.kind == "in":
            self.ingress += 1
        elif flow.trigger and flow.kind in COLUMNS:
            self.counts.setdefault(flow.trigger, Counter())[flow.kind] += 1
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

    def snapshot(self) -> dict[str, object]:
        """The board as JSON. `records` is how many records the broker topic holds (events
        in plus replies); a Trigger whose `committed` equals it has dispatched them all."""
        return {
            "ingress": self.ingress,
            "records": self.ingress + self.total("reply"),
            "triggers": {
                name: {
                    **{c: counts[c] for c in COLUMNS},
                    "committed": self.committed.get(name, 0),
                }
                for name, counts in self.counts.items()
            },
        }

    def table(self) -> str:
        """Events in, and one row per Trigger that saw any; idle Triggers are only counted."""
        busy = {name: counts for name, counts in self.counts.items() if any(counts.values())}
        width = max([len("trigger"), *map(len, busy)])
        cells = {c: max(len(HEADINGS[c]), 5) for c in COLUMNS}
        header = f"{'trigger':<{width}}  " + "  ".join(
            f"{HEADINGS[c]:>{cells[c]}}" for c in COLUMNS
        )
        lines = [f"events in through the ingress: {self.ingress}", header]
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
