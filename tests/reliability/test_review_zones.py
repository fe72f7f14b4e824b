"""Review defects, class "the host's zone": naive datetimes in `todo.occurrence.requested`
(and in `todo.task.created`) are read in the task's `timezone`, else in an offset the
request's own times carry, else in UTC; never in the zone of the machine that computes.
The same schedule-next function runs in three processes whose `TZ` differs (UTC,
America/Los_Angeles, Asia/Tokyo), over each store backend; every process must create the
same instant, the one python-dateutil computes in the task's zone.

Why each test fails on the pre-fix code (c97ba0d; reasoned from its source, not run):
c97ba0d's `tasks.next_occurrence` did `request.completed_at.astimezone(tz)` (and the same
for `due_at` and `series_start`) on naive datetimes. Python reads a naive datetime's
`astimezone` as the host's local time, so under TZ=Asia/Tokyo a naive 09:00 became 00:00
UTC and then 01:00/02:00 in Berlin, and the next occurrence landed 9 hours (Tokyo) or 8
(Los Angeles, 7 in summer) away from the UTC process's answer; with no `timezone` and only
naive times, `tz` was None and the series ran in the host's zone. Every case below with
a naive time fails under two of the three processes (the "same instant whatever TZ"
assertion and the comparison with dateutil). `todo.task.created` with a naive `due_at`
and a timezone was read right already (`localize`), and stays here as a control.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relstack import FunctionSet, start_together, stop_together

from harness import FunctionProcess, cloud_event
from peers import STORE_KINDS

HOST_ZONES = ("UTC", "America/Los_Angeles", "Asia/Tokyo")


def local_offset(tz: str) -> str:
    """The UTC offset a Python process started with TZ=`tz` reads naive times in."""
    code = "import datetime; print(datetime.datetime(2026, 7, 1, 12).astimezone().utcoffset())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"TZ": tz}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_host_zones_really_differ():
    """The premise: TZ changes how a process reads naive times on this machine (else the
    tests below could not tell a process that reads them in the host's zone)."""
    assert len({local_offset(tz) for tz in HOST_ZONES}) == len(HOST_ZONES)


@pytest.fixture(scope="module", params=STORE_KINDS)
def fs(request, tmp_path_factory, moto_server) -> Iterator[FunctionSet]:
    """The store and peers of a function set, and schedule-next once per host zone."""
    with pytest.MonkeyPatch.context() as mp:
        stack = FunctionSet.start(
            request.param, tmp_path_factory.mktemp("zones"), mp, moto=moto_server, names=()
        )
        processes = {
            tz: FunctionProcess("schedule-next", {**stack.env, "TZ": tz}) for tz in HOST_ZONES
        }
        try:
            start_together(processes.values())
            stack.hosts = processes
            with httpx.Client(timeout=60) as client:
                stack.http = client
                yield stack
        finally:
            stop_together(processes.values())
            stack.stop_at_once()


@dataclass(frozen=True)
class Case:
    zone: str | None  # the task's timezone; None: the request's own offset, else UTC
    series_start: str
    due_at: str
    completed_at: str
    rule: str = "FREQ=DAILY"
    mode: str = "schedule"

    def data(self, user: str) -> dict:
        data = {
            "user_id": user,
            "task_id": "t",
            "series_id": "t",
            "series_start": self.series_start,
            "due_at": self.due_at,
            "completed_at": self.completed_at,
            "title": "Daily",
            "recurrence": {"rule": self.rule, "mode": self.mode},
        }
        if self.zone:
            data["timezone"] = self.zone
        return data


def zone_of(case: Case) -> tzinfo:
    if case.zone:
        return ZoneInfo(case.zone)
    for text in (case.series_start, case.due_at, case.completed_at):
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.tzinfo
    return UTC


def expected(case: Case) -> datetime:
    """python-dateutil's next occurrence, every naive time read in the task's zone."""
    tz = zone_of(case)

    def read(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)

    start, due, done = read(case.series_start), read(case.due_at), read(case.completed_at)
    if case.mode == "schedule":
        after = max(due.astimezone(UTC), done.astimezone(UTC))
        found = rrulestr(case.rule, dtstart=start).after(after)
    else:
        # The rule restarts at the moment of completion, on the zone's real wall clock.
        restart = done.astimezone(UTC).astimezone(tz)
        found = rrulestr(case.rule, dtstart=restart).after(done.astimezone(UTC))
    assert found is not None
    return found.astimezone(UTC)


def check(fs: FunctionSet, case: Case) -> None:
    """Each host zone's process, a user of its own: the same instant, dateutil's."""
    want = expected(case)
    got = {}
    for tz, process in fs.hosts.items():
        user = f"z-{uuid.uuid4().hex[:10]}"
        headers, body = cloud_event(
            "todo.occurrence.requested", case.data(user), id_=uuid.uuid4().hex, source="/zones"
        )
        answer = fs.http.post(process.url, headers=headers, content=body)
        assert answer.status_code == 200, (tz, case, answer.text)
        replied = datetime.fromisoformat(answer.json()["due_at"])
        [stored] = fs.store.list_tasks(user)
        assert stored.due_at == replied, (tz, stored.due_at, replied)
        got[tz] = replied.astimezone(UTC)
    assert got == dict.fromkeys(fs.hosts, want), (case, got, want)


DST = {
    # A daily 09:00 across each zone's changes (the due before it, the next after).
    "berlin-spring": Case(
        "Europe/Berlin", "2026-03-20T09:00", "2026-03-28T09:00", "2026-03-28T09:30"
    ),
    "berlin-autumn": Case(
        "Europe/Berlin", "2026-10-01T09:00", "2026-10-24T09:00", "2026-10-24T18:00"
    ),
    "new-york-spring": Case(
        "America/New_York", "2026-03-01T09:00", "2026-03-07T09:00", "2026-03-07T23:59"
    ),
    "new-york-autumn": Case(
        "America/New_York", "2026-10-01T09:00", "2026-10-31T09:00", "2026-10-31T09:01"
    ),
    "lord-howe-spring": Case(
        "Australia/Lord_Howe", "2026-09-01T09:00", "2026-10-03T09:00", "2026-10-03T09:05"
    ),
    "lord-howe-autumn": Case(
        "Australia/Lord_Howe", "2026-03-01T09:00", "2026-04-04T09:00", "2026-04-04T12:00"
    ),
    "apia-skipped-day": Case(
        "Pacific/Apia", "2011-12-01T09:00", "2011-12-29T09:00", "2011-12-29T10:00"
    ),
    "apia-today": Case("Pacific/Apia", "2026-01-01T09:00", "2026-06-10T09:00", "2026-06-10T21:00"),
    "kathmandu": Case("Asia/Kathmandu", "2026-01-01T09:00", "2026-06-10T09:00", "2026-06-10T09:45"),
    "kathmandu-late": Case(
        "Asia/Kathmandu", "2026-01-01T09:00", "2026-06-10T09:00", "2026-06-12T07:00"
    ),
    # A start in the spring-forward gap (02:30 does not exist that night).
    "berlin-gap-start": Case(
        "Europe/Berlin", "2026-03-29T02:30", "2026-03-29T02:30", "2026-03-29T10:00"
    ),
    "new-york-gap-start": Case(
        "America/New_York", "2026-03-08T02:30", "2026-03-08T02:30", "2026-03-08T04:00"
    ),
    "lord-howe-gap-start": Case(
        "Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-04T02:15", "2026-10-04T03:00"
    ),
    # An occurrence in the gap.
    "berlin-into-gap": Case(
        "Europe/Berlin", "2026-03-20T02:30", "2026-03-28T02:30", "2026-03-28T03:00"
    ),
    "new-york-into-gap": Case(
        "America/New_York", "2026-03-01T02:30", "2026-03-07T02:30", "2026-03-07T02:45"
    ),
    # The autumn fold: a start, a completion and an occurrence in the repeated hour.
    "berlin-fold-start": Case(
        "Europe/Berlin", "2026-10-25T02:30", "2026-10-25T02:30", "2026-10-25T02:40"
    ),
    "berlin-into-fold": Case(
        "Europe/Berlin", "2026-10-20T02:30", "2026-10-24T02:30", "2026-10-24T03:00"
    ),
    "new-york-fold-start": Case(
        "America/New_York", "2026-11-01T01:30", "2026-11-01T01:30", "2026-11-01T01:45"
    ),
    "lord-howe-fold": Case(
        "Australia/Lord_Howe", "2026-03-01T01:45", "2026-04-04T01:45", "2026-04-04T02:00"
    ),
    # From the completion, at 09:00 in the zone.
    "berlin-completion": Case(
        "Europe/Berlin",
        "2026-03-01T09:00",
        "2026-03-28T09:00",
        "2026-03-29T08:30",
        "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
        "completion",
    ),
    "apia-completion": Case(
        "Pacific/Apia",
        "2011-12-01T09:00",
        "2011-12-28T09:00",
        "2011-12-29T11:00",
        "FREQ=DAILY",
        "completion",
    ),
    # No timezone: the request's own offset, else UTC; never the host's.
    "offset-from-series-start": Case(
        None, "2026-03-01T09:00:00+05:45", "2026-03-28T09:00", "2026-03-28T10:00"
    ),
    "offset-from-due": Case(
        None, "2026-03-01T09:00", "2026-03-28T09:00:00-03:00", "2026-03-28T10:00"
    ),
    "all-naive-is-utc": Case(None, "2026-03-01T09:00", "2026-03-28T09:00", "2026-03-28T23:30"),
}


@pytest.mark.parametrize("name", sorted(DST))
def test_named_cases_land_on_the_same_instant_in_every_host_zone(fs, name):
    check(fs, DST[name])


ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kathmandu",
    None,
    "+05:45",
    "-09:30",
]
RULES = [
    "FREQ=DAILY",
    "FREQ=WEEKLY",
    "FREQ=DAILY;INTERVAL=3",
    "FREQ=MONTHLY",
    "FREQ=HOURLY;INTERVAL=7",
    "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
    "FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=2;BYMINUTE=30",
]


@settings(
    max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(date(2010, 1, 1), date(2035, 12, 31)),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    days_to_due=st.integers(0, 60),
    late=st.integers(-600, 3000),
    rule=st.sampled_from(RULES),
    mode=st.sampled_from(["schedule", "completion"]),
)
def test_any_naive_series_lands_on_the_same_instant_in_every_host_zone(
    fs, zone, day, hour, minute, days_to_due, late, rule, mode
):
    start = datetime(day.year, day.month, day.day, hour, minute)
    due = start + timedelta(days=days_to_due)
    done = due + timedelta(minutes=late)
    if zone is not None and zone[0] in "+-":
        # No timezone: the series_start's own offset is the series' zone.
        case = Case(None, start.isoformat() + zone, due.isoformat(), done.isoformat(), rule, mode)
    else:
        case = Case(zone, start.isoformat(), due.isoformat(), done.isoformat(), rule, mode)
    check(fs, case)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Pacific/Apia", "Asia/Kathmandu", None])
def test_a_created_tasks_naive_due_at_is_read_in_its_zone(fs, zone):
    naive = "2026-03-29T02:30:00" if zone == "Europe/Berlin" else "2026-07-01T09:00:00"
    tz = ZoneInfo(zone) if zone else UTC
    want = datetime.fromisoformat(naive).replace(tzinfo=tz).astimezone(UTC)
    for host, process in fs.hosts.items():
        user = f"c-{uuid.uuid4().hex[:10]}"
        data = {"user_id": user, "task_id": "t", "title": "x", "due_at": naive}
        if zone:
            data["timezone"] = zone
        headers, body = cloud_event("todo.task.created", data, id_=uuid.uuid4().hex)
        answer = fs.http.post(process.url, headers=headers, content=body)
        assert answer.status_code == 202, answer.text
        [stored] = fs.store.list_tasks(user)
        assert stored.due_at.astimezone(UTC) == want, (host, zone, stored.due_at)
