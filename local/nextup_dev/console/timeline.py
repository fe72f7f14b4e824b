"""What flowed through `nextup dev`, as the console shows it: every event in (through the
ingress) or published as a reply, each with its deliveries per Trigger, linked into causal
chains. Pure and bounded: the newest `limit` events are kept, older ones are forgotten.

Links: a reply's cause is the event whose delivery answered with it (the dispatcher says
which); an event a function posted to its K_SINK carries its cause's W3C `traceparent`,
which the ingress stamps on every event that comes without one, so one trace id ties a
whole chain together, down to the mail a reminder sent.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LIMIT = 10_000  # events kept
ATTEMPTS_PER_DELIVERY = 50  # attempts kept per event and Trigger (redeliveries included)
MAILS = 1_000
OUTCOMES = ("pending", "delivered", "retrying", "dead-lettered", "dropped", "unrouted")


def event_ref(source: str, event_id: str) -> str:
    """A short, URL-safe name of an event's identity (`source` + `id`)."""
    return hashlib.sha1(f"{source}\0{event_id}".encode()).hexdigest()[:16]


def trace_id(attributes: dict[str, Any]) -> str | None:
    parent = attributes.get("traceparent")
    if not isinstance(parent, str):
        return None
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else None


def user_of(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("user_id"), str):
        return data["user_id"]
    return None


@dataclass
class Entry:
    ref: str
    kind: str  # posted, emitted, tick, unrouted, redriven, reply
    attributes: dict[str, Any]
    data: Any
    at: float
    cause: str | None = None  # the ref of the event whose delivery replied with this one
    via: str | None = None  # the Trigger that delivered the cause, or the function emitting
    seen: int = 1  # times it came in (a redelivered or re-posted event is one entry)
    routed: bool = True  # some Trigger's filter matches it
    deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def trace(self) -> str | None:
        return trace_id(self.attributes)

    @property
    def user(self) -> str | None:
        return user_of(self.data)

    def outcome(self) -> str:
        if (self.kind == "unrouted" or not self.routed) and not self.deliveries:
            return "unrouted"
        last = {attempts[-1]["outcome"] for attempts in self.deliveries.values() if attempts}
        for word in ("dead-lettered", "dropped"):
            if word in last:
                return word
        if "retry" in last:
            return "retrying"
        return "delivered" if last else "pending"

    def summary(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "at": self.at,
            "id": self.attributes.get("id"),
            "type": self.attributes.get("type"),
            "source": self.attributes.get("source"),
            "user": self.user,
            "trace": self.trace,
            "outcome": self.outcome(),
            "seen": self.seen,
            "triggers": sorted(self.deliveries),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "attributes": self.attributes,
            "data": self.data,
            "cause": self.cause,
            "via": self.via,
            "deliveries": [
                {"trigger": name, "attempts": list(attempts)}
                for name, attempts in self.deliveries.items()
            ],
        }


@dataclass(frozen=True)
class Query:
    type: str = ""
    user: str = ""
    id: str = ""
    outcome: str = ""

    def matches(self, entry: Entry) -> bool:
        if self.type and self.type not in str(entry.attributes.get("type", "")):
            return False
        if self.user and entry.user != self.user:
            return False
        if self.id and self.id not in str(entry.attributes.get("id", "")):
            return False
        return not self.outcome or entry.outcome() == self.outcome


class Timeline:
    def __init__(
        self,
        subscribers: dict[str, str] | None = None,
        limit: int = LIMIT,
        routed: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.subscribers = subscribers or {}  # Trigger -> the function it delivers to
        self.schedules: dict[str, str] = {}  # Trigger -> its retry schedule, in words
        self.routed = routed  # whether any Trigger would take an event with these attributes
        self.limit = limit
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.traces: dict[str, list[str]] = {}
        self.mails: deque[dict[str, Any]] = deque(maxlen=MAILS)
        self.version = 0  # changes whenever anything is added

    # In

    def add_event(
        self,
        kind: str,
        attributes: dict[str, Any],
        data: Any,
        *,
        at: float | None = None,
        cause: str | None = None,
        via: str | None = None,
    ) -> Entry:
        ref = event_ref(str(attributes.get("source")), str(attributes.get("id")))
        self.version += 1
        entry = self.entries.get(ref)
        if entry is not None:
            entry.seen += 1
            if entry.kind == "stub":  # known from its deliveries first: now from itself
                entry.kind, entry.attributes, entry.data = kind, attributes, data
            return entry
        entry = Entry(ref, kind, attributes, data, at or time.time(), cause, via)
        if self.routed is not None:
            entry.routed = self.routed(attributes)
        self._keep(entry)
        return entry

    def _keep(self, entry: Entry) -> None:
        self.entries[entry.ref] = entry
        trace = entry.trace
        if trace:
            self.traces.setdefault(trace, []).append(entry.ref)
        while len(self.entries) > self.limit:
            _, old = self.entries.popitem(last=False)
            members = self.traces.get(old.trace or "")
            if members is not None:
                if old.ref in members:
                    members.remove(old.ref)
                if not members:
                    del self.traces[old.trace]  # type: ignore[arg-type]

    def add_attempts(self, attempts: list[dict[str, Any]]) -> None:
        """Attempts as the dispatcher's ring gives them (`attempts.AttemptLog.since`)."""
        for attempt in attempts:
            attributes = attempt.get("event") or {}
            ref = event_ref(str(attributes.get("source")), str(attributes.get("id")))
            entry = self.entries.get(ref)
            if entry is None:  # delivered before it was seen coming in (or forgotten since)
                entry = Entry(ref, "stub", dict(attributes), None, attempt.get("at") or time.time())
                self._keep(entry)
            kept = entry.deliveries.setdefault(attempt["trigger"], [])
            kept.append({k: v for k, v in attempt.items() if k not in ("event", "reply")})
            del kept[:-ATTEMPTS_PER_DELIVERY]
            reply = attempt.get("reply")
            if reply:
                kept[-1]["reply"] = event_ref(
                    str(reply["attributes"].get("source")), str(reply["attributes"].get("id"))
                )
                self.add_event(
                    "reply",
                    reply["attributes"],
                    reply.get("data"),
                    at=attempt.get("at"),
                    cause=ref,
                    via=attempt["trigger"],
                )
            self.version += 1

    def add_mail(self, mail: dict[str, Any]) -> None:
        """A message the mailbox kept: `name`, `to`, `subject`, `task`, `at`."""
        self.mails.append(mail)
        self.version += 1

    # Out

    def query(self, query: Query, limit: int = 200) -> list[dict[str, Any]]:
        """The newest events matching `query`, newest first."""
        found = []
        for entry in reversed(self.entries.values()):
            if query.matches(entry):
                found.append(entry.summary())
                if len(found) >= limit:
                    break
        return found

    def types(self) -> list[str]:
        return sorted({str(e.attributes.get("type")) for e in self.entries.values()})

    def users(self) -> list[str]:
        return sorted({e.user for e in self.entries.values() if e.user})

    def get(self, ref: str) -> Entry | None:
        return self.entries.get(ref)

    def chain(self, ref: str) -> dict[str, Any] | None:
        """The causal chain `ref` belongs to, from its first event: each event with its
        deliveries per Trigger, under each delivery what it produced (a reply, or what the
        function it reached posted), and the mail a reminder's sending kept."""
        entry = self.entries.get(ref)
        if entry is None:
            return None
        members = self._members(entry)
        parents = {m.ref: self._parent(m, members) for m in members}
        children: dict[str | None, list[Entry]] = {}
        for member in members:
            children.setdefault(parents[member.ref], []).append(member)
        roots = children.get(None, [])

        def node(item: Entry, seen: set[str]) -> dict[str, Any]:
            seen.add(item.ref)
            below = [c for c in children.get(item.ref, []) if c.ref not in seen]
            deliveries = []
            for trigger, attempts in item.deliveries.items():
                function = self.subscribers.get(trigger)
                produced = [c for c in below if c.via in (trigger, function) and c.ref not in seen]
                deliveries.append(
                    {
                        "trigger": trigger,
                        "function": function,
                        "schedule": self.schedules.get(trigger),
                        "attempts": list(attempts),
                        "outcome": attempts[-1]["outcome"] if attempts else "pending",
                        "produced": [node(c, seen) for c in produced if c.ref not in seen],
                    }
                )
            rest = [node(c, seen) for c in below if c.ref not in seen]
            return {
                **item.summary(),
                "data": item.data,
                "deliveries": deliveries,
                "children": rest,
                "mails": self._mails_of(item),
                "selected": item.ref == ref,
            }

        seen: set[str] = set()
        return {"trace": entry.trace, "roots": [node(r, seen) for r in roots if r.ref not in seen]}

    def _members(self, entry: Entry) -> list[Entry]:
        refs = {entry.ref}
        if entry.trace and entry.trace in self.traces:
            refs.update(self.traces[entry.trace])
        # Causes and replies are linked even without a trace id.
        frontier = list(refs)
        while frontier:
            item = self.entries.get(frontier.pop())
            if item is None:
                continue
            if item.cause and item.cause not in refs and item.cause in self.entries:
                refs.add(item.cause)
                frontier.append(item.cause)
            for delivery in item.deliveries.values():
                for attempt in delivery:
                    reply = attempt.get("reply")
                    if reply and reply not in refs and reply in self.entries:
                        refs.add(reply)
                        frontier.append(reply)
        return sorted((self.entries[r] for r in refs if r in self.entries), key=lambda e: e.at)

    def _parent(self, member: Entry, members: list[Entry]) -> str | None:
        if member.cause and any(m.ref == member.cause for m in members):
            return member.cause
        if member.kind == "emitted" and member.via:
            # The latest earlier event of the chain delivered to the function that emitted it.
            for other in reversed(members):
                if other is member or other.at > member.at:
                    continue
                if any(self.subscribers.get(t) == member.via for t in other.deliveries):
                    return other.ref
        first = members[0]
        return None if first is member else first.ref

    def _mails_of(self, entry: Entry) -> list[dict[str, Any]]:
        data = entry.data if isinstance(entry.data, dict) else {}
        if entry.attributes.get("type") != "todo.reminder.sent" or data.get("channel") != "email":
            return []
        task = data.get("task_id")
        return [m for m in self.mails if task and m.get("task") == task]
