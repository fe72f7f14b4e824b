"""Tasks and user isolation: the same contract on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import T0, reminder, task

from nextup.reminders import ReminderStatus
from nextup.store import Conflict, Store
from nextup.tasks import TaskStatus

# The core contract: on DynamoDB through boto3's client too (conftest).
THROUGH_BOTO3 = True


def test_create_then_get(store: Store) -> None:
    new = task("alice", "t1", title="write report", due_at=T0)
    stored, created = store.create_task(new)
    assert created
    assert stored.version == 1
    assert stored == new.model_copy(update={"version": 1})
    assert store.get_task("alice", "t1") == stored
    assert store.get_task("alice", "nope") is None


def test_create_is_put_if_absent(store: Store) -> None:
    first, created = store.create_task(task("alice", "t1", title="first"))
    saved = store.save_task(first.model_copy(update={"title": "renamed"}))
    again, created_again = store.create_task(task("alice", "t1", title="replayed"))
    assert created and not created_again
    assert again == saved  # the stored task, not the replayed one
    assert again.title == "renamed" and again.version == 2


def test_save_is_compare_and_set(store: Store) -> None:
    stored, _ = store.create_task(task("alice", "t1"))
    done = store.save_task(stored.model_copy(update={"status": TaskStatus.COMPLETED}))
    assert done.version == 2
    assert store.get_task("alice", "t1") == done
    with pytest.raises(Conflict) as stale:
        store.save_task(stored.model_copy(update={"title": "stale write"}))
    assert stale.value.status == 409
    assert store.get_task("alice", "t1") == done


def test_save_needs_a_stored_version(store: Store) -> None:
    with pytest.raises(ValueError, match="create_task"):
        store.save_task(task("alice", "t1"))
    assert store.get_task("alice", "t1") is None


def test_save_of_missing_task_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        store.save_task(task("alice", "ghost", version=1))
    assert store.get_task("alice", "ghost") is None


def test_list_tasks_sorted_and_filtered(store: Store) -> None:
    for task_id, due in [
        ("c", T0 + timedelta(days=2)),
        ("b", None),
        ("a", T0),
        ("d", T0),
        ("e", None),
    ]:
        store.create_task(task("alice", task_id, due_at=due))
    store.create_task(task("bob", "x", due_at=T0 - timedelta(days=1)))
    done = store.get_task("alice", "c")
    assert done is not None
    store.save_task(done.model_copy(update={"status": TaskStatus.COMPLETED}))

    assert [t.task_id for t in store.list_tasks("alice")] == ["a", "d", "c", "b", "e"]
    assert [t.task_id for t in store.list_tasks("alice", status=TaskStatus.OPEN)] == [
        "a",
        "d",
        "b",
        "e",
    ]
    assert [t.task_id for t in store.list_tasks("alice", status="completed")] == ["c"]
    assert store.list_tasks("carol") == []


def test_list_tasks_reads_every_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nextup.store.base.LIST_PAGE", 4)  # many pages from few tasks
    ids = [f"t{i:02d}" for i in range(23)]
    for task_id in ids:
        store.create_task(task("alice", task_id))
    store.save_reminder(reminder("alice", "t000"))  # same partition, not a task
    assert [t.task_id for t in store.list_tasks("alice")] == ids


def test_a_task_id_is_the_users_own(store: Store) -> None:
    """Ids live in their user's partition: the same id is another task for another user,
    and nothing one user does with it reaches, blocks or reveals the other's."""
    mine, _ = store.create_task(task("alice", "t1", title="alice's"))
    theirs, created = store.create_task(task("bob", "t1", title="bob's"))
    assert created and theirs.title == "bob's"
    assert store.get_task("alice", "t1") == mine
    gone = store.save_task(theirs.model_copy(update={"status": TaskStatus.DELETED}))
    assert store.get_task("alice", "t1") == mine and gone.status is TaskStatus.DELETED


def test_users_are_isolated(store: Store) -> None:
    """Bob can neither see nor change any of Alice's items, through any call."""
    alice_task, _ = store.create_task(task("alice", "t1", title="alice's", due_at=T0))
    alice_reminder = store.save_reminder(reminder("alice", "t1"))

    assert store.get_task("bob", "t1") is None
    assert store.list_tasks("bob") == [] and store.list_reminders("bob") == []
    assert store.get_reminder("bob", "t1") is None
    assert (
        store.claim_reminder("bob", "t1", owner="bob", now=T0, lease=timedelta(minutes=1)) is None
    )
    with pytest.raises(Conflict):  # bob's key holds no task: his write cannot land on alice's
        store.save_task(alice_task.model_copy(update={"user_id": "bob", "title": "bob's"}))
    with pytest.raises(Conflict):
        store.save_reminder(
            alice_reminder.model_copy(update={"user_id": "bob", "status": ReminderStatus.CANCELLED})
        )
    store.create_task(task("bob", "t1", title="bob's"))
    store.save_reminder(reminder("bob", "t1"))

    assert store.get_task("alice", "t1") == alice_task
    assert store.get_reminder("alice", "t1") == alice_reminder
    assert store.list_tasks("alice") == [alice_task]
    assert sorted(r.user_id for r in store.due_reminders(T0).items) == ["alice", "bob"]


@pytest.mark.parametrize("user_id", ["#event#k1", "#system", "", "a b", "x" * 129])
def test_keys_outside_a_user_partition_are_refused(store: Store, user_id: str) -> None:
    store.create_task(task("alice", "t1"))
    with pytest.raises(ValueError):
        store.get_task(user_id, "t1")
    with pytest.raises(ValueError):
        store.list_tasks(user_id)
    with pytest.raises(ValueError):
        store.get_reminder(user_id, "t1")
