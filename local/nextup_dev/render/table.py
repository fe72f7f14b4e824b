"""What the declarations in `nextup.functions` do not say and the deployment needs: per
function, the words heading its manifests, how far it scales, and (for `ticks=True`) the
PingSource that ticks it; and the one delivery policy every Trigger has.

A function missing from `DEPLOYMENTS` gets `Deployment()`: a heading written from its
declaration and the default scale. A function declared with `ticks=True` needs its `Tick`.
"""

from __future__ import annotations

from dataclasses import dataclass

from nextup.events import TASK_UPDATED


@dataclass(frozen=True)
class Delivery:
    """A Trigger's `delivery`; the Broker's default is the same without `timeout`."""

    retry: int = 10
    backoff_policy: str = "exponential"
    backoff_delay: str = "PT0.5S"
    timeout_seconds: int = 30
    dead_letter_sink: str = "nextup-dead-letters"  # the KafkaSink of dead-letters.yaml


DELIVERY = Delivery()
# A Knative Service answers for longer than the broker waits: a delivery the dispatcher gave
# up on is retried, never cut short by the Service first.
SERVICE_TIMEOUT_SECONDS = 2 * DELIVERY.timeout_seconds

# Types whose Trigger keeps the order of the events of one partition key (one task): a
# task's updates are applied in the order they were made.
ORDERED = frozenset({TASK_UPDATED})


@dataclass(frozen=True)
class Tick:
    """The PingSource of a function declared with `ticks=True`, and its Trigger."""

    source: str  # the PingSource's name
    trigger: str  # the Trigger's name after "<function>-"
    schedule: str  # cron, Etc/UTC; the OpenFaaS cron-connector's schedule too
    data: str  # the tick's JSON data (nothing in it is read)
    says: str  # one line for the PingSources' heading


@dataclass(frozen=True)
class Deployment:
    # Comment lines heading its Knative Service (without "# "); empty: from the declaration.
    summary: tuple[str, ...] = ()
    max_scale: int = 5  # Knative max-scale and OpenFaaS com.openfaas.scale.max
    openfaas_target: int = 20  # com.openfaas.scale.target (requests in flight per replica)
    openfaas_cpu: str = "500m"
    openfaas_memory: str = "256Mi"
    openfaas_note: tuple[str, ...] = ()  # comment lines above its stack.yml entry
    tick: Tick | None = None


DEPLOYMENTS = {
    "complete-task": Deployment(
        summary=(
            "complete-task: todo.task.completed -> marks the task done once, cancels its "
            "reminder and,",
            "for a recurring task, answers todo.occurrence.requested (the reply goes back to "
            "the broker).",
        ),
    ),
    "schedule-next": Deployment(
        summary=(
            "schedule-next: task created/updated/deleted and todo.occurrence.requested -> "
            "registers tasks,",
            "creates each next occurrence once, schedules reminders; answers todo.task.scheduled.",
        ),
    ),
    "send-reminder": Deployment(
        summary=(
            "send-reminder: the reminder-sweep PingSource (every minute) and todo.reminder.due "
            "-> sends",
            "every due reminder once by mail or webhook; emits todo.reminder.sent to K_SINK "
            "(SinkBinding).",
            "The sweep wakes it every minute, so it is idle-scaled only between sweeps.",
        ),
        max_scale=3,
        openfaas_target=10,
        openfaas_note=(
            "Swept every minute by the cron-connector (clusters without Knative Eventing; with the",
            "Kafka broker the reminder-sweep PingSource does it, see docs/DEPLOY.md). It may emit",
            "one todo.reminder.sent per reminder: NEXTUP_SINK is where they go.",
        ),
        tick=Tick(
            source="reminder-sweep",
            trigger="sweep",
            schedule="* * * * *",
            data='{"sweep": "reminders"}',
            says="every minute send-reminder sweeps due reminders",
        ),
    ),
    "health": Deployment(
        summary=(
            "health: todo.health.probe and the health-canary PingSource -> answers "
            "todo.health.reported",
            "with the status of every configured dependency.",
        ),
        max_scale=2,
        openfaas_target=10,
        openfaas_cpu="250m",
        openfaas_memory="192Mi",
        openfaas_note=(
            "Liveness and readiness of every dependency; the cron-connector calls it every five",
            "minutes as a canary (GET / on the function answers the full report at any time).",
        ),
        tick=Tick(
            source="health-canary",
            trigger="canary",
            schedule="*/5 * * * *",
            data='{"probe": "canary"}',
            says="every five minutes the health canary travels through the broker",
        ),
    ),
}
