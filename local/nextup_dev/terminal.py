"""What `nextup dev` says to a person: which happenings get a line (always, sampled, or only
into the log under `--quiet`), the banner, the per-Trigger table now and then. The stack
(`nextup_dev.stack`) orchestrates and counts; it hands every happening here to be shown.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from nextup.envelope import CloudEvent
from nextup.events import REMINDER_FAILED, REMINDER_SENT
from nextup_dev.status import Flow, Sampler, describe

log = logging.getLogger("nextup.dev")

# Printed even with --quiet: what a person must not miss.
ALWAYS_SHOWN = {
    "dead-lettered",
    "dropped",
    "unrouted",
    "mirrored",
    "cold",
    "process",
    "error",
    "tick",
    "failed",
    "sent",
}
NEVER_SHOWN = {"matched", "ready"}
# One line per event for these only while they come slowly (a first session reads them);
# at hundreds a second the table and GET /status say more than a scrolling terminal.
SAMPLED = {"posted", "emitted", "delivered", "reply"}


def reminder_news(event: CloudEvent) -> Flow | None:
    """What a person wants to see of a reminder's announcement: a webhook it reached (a
    mail shows as the mailbox keeping it), or why it failed for good."""
    data = event.data if isinstance(event.data, dict) else {}
    where = f"task {data.get('task_id')} of {data.get('user_id')}"
    if event["type"] == REMINDER_FAILED:
        return Flow("failed", detail=f"reminder of {where}: {data.get('error')}")
    if event["type"] == REMINDER_SENT and data.get("channel") == "webhook":
        return Flow("sent", detail=f"reminder of {where} by webhook")
    return None


class Terminal:
    def __init__(self, out: TextIO = sys.stdout, *, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self._sampler = Sampler()

    def show(self, line: str, *, on_terminal: bool = True) -> None:
        """A line for people: into .nextup/logs/nextup-dev.log always, onto the terminal
        unless --quiet holds it back."""
        log.info(line)
        if on_terminal:
            print(line, file=self.out, flush=True)

    def event_in(self, flow: Flow) -> None:
        """An event the ingress took: shown while events come slowly (an unrouted one
        always: nothing will ever receive it); a tick gets its line from its PingSource."""
        always = flow.kind in ALWAYS_SHOWN
        if flow.kind != "tick" and (always or self._sampler.allow()):
            self.show(describe(flow), on_terminal=always or not self.quiet)

    def happened(self, flow: Flow) -> None:
        if flow.kind in NEVER_SHOWN:
            return
        self.show(describe(flow), on_terminal=flow.kind in ALWAYS_SHOWN or not self.quiet)

    def held_back(self, by_dispatcher: int) -> None:
        """How many chatty lines the sampling held back (here and in the dispatcher)."""
        hidden = by_dispatcher + self._sampler.take_hidden()
        if hidden and not self.quiet:
            self.show(f"         ... {hidden} more not shown (GET /status for the counts)")

    def banner(self, seconds: float, state: dict[str, Any], parts: dict[str, str]) -> None:
        """The lines that say where everything is, once every part is up."""
        lines = [
            f"nextup dev is up ({seconds:.1f} s)",
            f"  broker ingress  {state['ingress']}  (POST CloudEvents; GET {state['healthz']})",
            f"  kafka           {state['kafka']} ({parts['kafka']})",
            f"  topics          {', '.join(state['topics'])}",
            f"  functions       {parts['functions']}",
            f"  triggers        {parts['triggers']}, a consumer group each "
            "(knative-trigger-<namespace>-<name>); GET /status for the counts",
            f"  ping sources    {parts['pings'] or '-'}",
            f"  manifests       {parts['manifests']}",
            f"  store           {parts['store']}",
            f"  mail            {state['mail']}/  (SMTP {state['smtp']})",
            f"  dead letters    {state['dead_letters']}/",
            f"  logs            {state['logs']}/",
            f"  console         {state['console'] or 'off (--no-console)'}"
            + ("  (open it in a browser)" if state["console"] else ""),
            "Send an event:    nextup emit todo.health.probe --data '{}'",
            "Ctrl-C stops everything.",
        ]
        self.show("\n".join(lines))
