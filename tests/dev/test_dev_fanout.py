"""One read of the broker topic for every Trigger, each in its own consumer group: a Trigger
that lags reads on by itself without holding the others up, each group's committed offsets
are real Kafka offsets, and after a SIGKILL of the dispatcher each Trigger resumes from
its own committed offset: nothing lost, nothing it had committed delivered again."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack import DevStack, alive, manifests, trigger, wait_for

from harness import HttpRecorder, Recorded, cloud_event, wait_until

TOPIC = "knative-broker-dev-local"
QUICK, PATIENT = "knative-trigger-dev-quick", "knative-trigger-dev-patient"
SLOW = 0.2  # seconds the patient subscriber takes per event


def socket_owner(client: tuple[str, int], server_port: int) -> int | None:
    """The pid of the process holding the client end of a loopback TCP connection, found
    through /proc while the connection is open (None once its process is gone)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local, remote) == (client[1], server_port):
            inode = fields[9]
            break
    if inode in (None, "0"):
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"nextup_dev.dispatcher" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:  # a process that ended meanwhile
            continue
    return None


class Subscriber:
    """`/quick` answers at once, `/patient` after SLOW seconds; keeps when each came and,
    for `/patient`, which dispatcher process sent it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.senders: dict[str, list[tuple[int | None, str]]] = defaultdict(list)
        self.port = 0  # the recorder's, set once it listens

    def __call__(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        event_id = request.headers["ce-id"]
        with self.lock:
            self.arrivals[request.path].append((time.monotonic(), event_id))
        if request.path == "/patient":
            sender = socket_owner(request.client, self.port)
            with self.lock:
                self.senders[request.path].append((sender, event_id))
            time.sleep(SLOW)
        return 202, {}, b""

    def ids(self, path: str, prefix: str) -> list[str]:
        with self.lock:
            return [i for _, i in self.arrivals[path] if i.startswith(prefix)]

    def sent_by(self, pid: int, path: str, prefix: str) -> list[str]:
        with self.lock:
            return [i for p, i in self.senders[path] if p == pid and i.startswith(prefix)]


@pytest.fixture(scope="module")
def recorder() -> Iterator[HttpRecorder]:
    subscriber = Subscriber()
    server = HttpRecorder(respond=subscriber).start()
    subscriber.port = int(server.url.rsplit(":", 1)[1])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, recorder: HttpRecorder) -> Iterator[DevStack]:
    work = tmp_path_factory.mktemp("dev-fanout")
    eventing = manifests(
        work,
        trigger("quick", "test.fan", f"{recorder.url}/quick"),
        trigger("patient", "test.fan", f"{recorder.url}/patient", ordered=True),
    )
    with pytest.MonkeyPatch.context() as mp:
        # A Trigger with more than 4 events queued reads on with its own consumer.
        mp.setenv("NEXTUP_DEV_QUEUE_LIMIT", "4")
        stack = DevStack(work, eventing=eventing).start()
    try:
        yield stack
    finally:
        stack.stop()


def post_in_order(dev: DevStack, ids: list[str]) -> None:
    # One partition key, posted one by one: their order on the partition is known.
    for event_id in ids:
        headers, body = cloud_event("test.fan", {}, id_=event_id, partitionkey="fan")
        assert dev.post(headers, body, path="/dev/local").status_code == 202


def record_offsets(bootstrap: str) -> tuple[dict[str, int], Any, int]:
    """Read with a plain aiokafka client: the offset of each event keyed `fan`, their
    partition, and its end offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> tuple[dict[str, int], Any, int]:
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            await reader.topics()
            parts = [TopicPartition(TOPIC, p) for p in reader.partitions_for_topic(TOPIC)]
            reader.assign(parts)
            await reader.seek_to_beginning(*parts)
            ends = await reader.end_offsets(parts)
            offsets: dict[str, int] = {}
            where = None
            while any([await reader.position(tp) < ends[tp] for tp in parts]):
                for tp, records in (await reader.getmany(timeout_ms=200)).items():
                    for record in records:
                        if record.key == b"fan":
                            offsets[dict(record.headers)["ce_id"].decode()] = record.offset
                            where = tp
        finally:
            await reader.stop()
        assert where is not None
        return offsets, where, ends[where]

    return asyncio.run(run())


def committed_when(
    bootstrap: str, where: Any, holds: Callable[[dict[str, int | None]], bool], timeout: float
) -> dict[str, int | None]:
    """Each group's committed offset on `where`, polled (by a client in each group that
    never commits) until `holds` is true of them."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> dict[str, int | None]:
        members = {
            group: AIOKafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
            )
            for group in (QUICK, PATIENT)
        }
        for member in members.values():
            await member.start()
            member.assign([where])
        try:
            deadline = time.monotonic() + timeout
            while True:
                committed = {g: await m.committed(where) for g, m in members.items()}
                if holds(committed):
                    return committed
                if time.monotonic() > deadline:
                    raise AssertionError(f"committed offsets never held: {committed}")
                await asyncio.sleep(0.05)
        finally:
            for member in members.values():
                await member.stop()

    return asyncio.run(run())


def test_a_lagging_trigger_reads_on_by_itself_and_holds_no_other_up(dev, recorder):
    subscriber: Subscriber = recorder.respond
    ids = [f"lag-{n:02d}" for n in range(30)]
    post_in_order(dev, ids)
    posted = time.monotonic()
    wait_for(lambda: len(subscriber.ids("/quick", "lag-")) == 30, 30, "the quick Trigger")
    done_quick = max(t for t, i in subscriber.arrivals["/quick"] if i.startswith("lag-"))
    # The patient one needs 6 s for them all; the quick one did not wait for it.
    assert done_quick - posted < 1.5, "the quick Trigger waited for the patient one"
    wait_for(lambda: len(subscriber.ids("/patient", "lag-")) == 30, 30, "the patient Trigger")
    left = [
        t for t, i in subscriber.arrivals["/patient"] if i.startswith("lag-") and t > done_quick
    ]
    assert len(left) >= 5, "the patient Trigger had no backlog: make it slower"
    assert subscriber.ids("/patient", "lag-") == ids, "in order, each once"
    assert sorted(subscriber.ids("/quick", "lag-")) == ids
    log = dev.log()
    assert "lagging" in log and "patient" in log and "caught-up" in log, log


def test_each_trigger_resumes_from_its_own_committed_offset_after_a_dispatcher_sigkill(
    dev, recorder
):
    subscriber: Subscriber = recorder.respond
    ids = [f"kill-{n:02d}" for n in range(60)]
    post_in_order(dev, ids)
    bootstrap = dev.state()["kafka"]
    offsets, where, end = record_offsets(bootstrap)

    def apart(committed: dict[str, int | None]) -> bool:
        """The quick group committed everything, the patient one only a part of it."""
        return committed[QUICK] == end and 0 < (committed[PATIENT] or 0) < end - 20

    committed_when(bootstrap, where, apart, 30)
    before = dev.state()["pids"]["dispatcher"]
    os.kill(before, signal.SIGKILL)
    # Where each group stood when the dispatcher died (nothing commits for it now).
    committed = committed_when(bootstrap, where, lambda c: True, 10)
    restarted = wait_until(
        lambda: (
            (pid := dev.state()["pids"]["dispatcher"]) not in (None, before) and alive(pid) and pid
        ),
        60,
        "the dispatcher to be restarted",
    )
    dev.remember_pids()
    wait_for(lambda: len(set(subscriber.ids("/patient", "kill-"))) == 60, 60, "every event")
    dev.wait_drained(60)

    quick = Counter(subscriber.ids("/quick", "kill-"))
    assert set(quick) == set(ids) and max(quick.values()) == 1, "quick had committed them all"
    patient = subscriber.ids("/patient", "kill-")
    assert set(patient) == set(ids), "lost"
    resumed = committed[PATIENT]
    assert resumed is not None
    # What the patient group had committed was not delivered again; the first delivery
    # after the restart is the event at its committed offset.
    done = {i for i in ids if offsets[i] < resumed}
    counts = Counter(patient)
    assert all(counts[i] == 1 for i in done), "delivered again though committed"
    # Told apart by the process that sent it, not by the clock: a fast restart redelivers
    # within a fraction of a second of the kill, a slow one after seconds.
    first = subscriber.sent_by(restarted, "/patient", "kill-")[0]
    assert offsets[first] == resumed, (first, offsets[first], resumed)
    # Its order held across the crash: each event's first delivery in offset order.
    firsts = list(dict.fromkeys(patient))
    assert firsts == sorted(firsts, key=offsets.__getitem__)
    # Both groups hold real Kafka offsets at the end of the partition now.
    # (fails the test if they do not get there)
    committed_when(bootstrap, where, lambda c: c == {QUICK: end, PATIENT: end}, 30)
