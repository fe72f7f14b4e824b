"""The contract between a function's runtime and its handlers, and the declaration of a
function: what it consumes (each type with its handler), emits and depends on.

A handler is one of two shapes:

- `Transaction` (most events): a pure decision over stored state. `prepare` says which
  items the event needs; the runtime reads them, together with the event's receipt, in
  one round trip; `decide` turns what was found into the changes to store and the events
  to emit; the runtime commits the changes and the receipt together, all or nothing, and
  decides again from fresh state if another delivery won the race. Nothing in a
  transaction does I/O, so a crash anywhere leaves either nothing or everything.
- `Effect` (the reminder sweep, the health canary): talks to the outside world as it goes
  (claims, mails, probes), each step idempotent on its own; its receipt is written after.

Handlers are named by "module:attribute" and imported on first use: a function's cold
start never loads the other functions' code.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nextup.envelope import CloudEvent
from nextup.errors import Unavailable
from nextup.events import Decoded

if TYPE_CHECKING:
    from nextup.services import Services
    from nextup.store import Ref


@dataclass(frozen=True)
class Context:
    """One delivery of one event, as a handler sees it."""

    event: CloudEvent
    decoded: Decoded
    key: str  # the event's identity (`nextup.envelope.event_key`): source + id
    now: datetime  # when the delivery began (UTC)
    source: str  # the `source` of the events this function emits

    @property
    def data(self) -> Any:
        return self.decoded.data


@dataclass(frozen=True)
class Decision:
    """What an event does: the models to store (each at the version it was read at; 0 for
    new ones), the events to emit, and words for the answer and the log."""

    outcome: str
    changes: tuple[BaseModel, ...] = ()
    events: tuple[CloudEvent, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    # An idempotent call that must succeed before anything is stored (the todo app's API,
    # with an idempotency key): a crash after it is repeated by the redelivery.
    before_commit: Callable[[Services], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Prepared:
    """What a transaction reads, and how it decides once it has read it (`found` holds the
    model at each of `reads`, or None)."""

    reads: Sequence[Ref[Any]]
    decide: Callable[[list[Any]], Decision]


@dataclass(frozen=True)
class Transaction:
    prepare: Callable[[Context], Prepared]


@dataclass(frozen=True)
class Result:
    """What an effect did: an outcome word, the events it emits.

    `delivered` runs once the events are out (posted to the sink, or about to be the
    reply): an effect that keeps an outbox marks its entries done there. `settled` runs
    after that, whether the events went out or not: it releases what it held for the
    whole delivery. `unavailable`: part of the work waits for a dependency that is down;
    the delivery answers with it (503) once the rest is done and its events are out.
    """

    outcome: str
    events: tuple[CloudEvent, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    delivered: Callable[[], Awaitable[None]] | None = None
    settled: Callable[[], None] | None = None
    unavailable: Unavailable | None = None


@dataclass(frozen=True)
class Effect:
    run: Callable[[Services, Context], Awaitable[Result]]


Handler = Transaction | Effect


@dataclass(frozen=True)
class Function:
    """One function, declared once (`nextup.functions`): everything else (the event
    catalog's consumers, the Triggers, the deployment manifests, the tests' routing) is
    derived from or checked against these declarations."""

    name: str
    # Each consumed type and its handler, as "module:attribute".
    consumes: Mapping[str, str]
    emits: frozenset[str]
    dependencies: tuple[str, ...]
    dapr_topic: str
    # Accept the OpenFaaS cron-connector's plain POST as a ping tick.
    ticks: bool = False
    # GET / and /health report every configured dependency (the health function).
    report: bool = False
    # Under a Dapr sidecar: the topic each emitted type is published to.
    dapr_publish: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A reply whose type matches the function's own Trigger would loop forever.
        looping = set(self.consumes) & self.emits
        if looping:
            raise ValueError(f"{self.name} emits a type it consumes: {sorted(looping)}")

    def handler(self, type_: str) -> Handler:
        module, _, attribute = self.consumes[type_].partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not isinstance(found, Transaction | Effect):
            raise TypeError(f"{self.consumes[type_]} is not a Transaction or an Effect")
        return found
