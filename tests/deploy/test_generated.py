"""Every file that follows from the function declarations is what the generator renders
from them (`make generate`), and no file is left of a function no longer declared."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from deploy_helpers import ROOT

from nextup.events import CATALOG, PING
from nextup.functions import ALL
from nextup_dev.render import eventing_base, render, strays, trigger_name
from nextup_dev.render.table import DELIVERY

RENDERED = render(ROOT)


@pytest.mark.parametrize("path", sorted(RENDERED))
def test_the_committed_file_is_the_rendered_one(path: str) -> None:
    committed = ROOT / path
    assert committed.is_file(), f"{path} is missing: run `make generate`"
    assert committed.read_text() == RENDERED[path], (
        f"{path} differs from what nextup_dev.render makes of the declarations in "
        "nextup.functions: run `make generate` (and edit the declarations or "
        "local/nextup_dev/render/, never the generated file)"
    )


def test_no_file_of_an_undeclared_function_is_left() -> None:
    assert strays(ROOT, RENDERED) == [], "not declared in nextup.functions: delete them"


def test_the_check_command_agrees() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nextup_dev.generate", "--check", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_command_names_a_stale_file(tmp_path) -> None:
    """A copy of the checkout with one Trigger edited by hand: --check names the file."""
    for path, text in RENDERED.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    triggers = tmp_path / "eventing/base/triggers.yaml"
    triggers.write_text(triggers.read_text().replace("retry: 10", "retry: 3", 1))
    done = subprocess.run(
        [sys.executable, "-m", "nextup_dev.generate", "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["stale: eventing/base/triggers.yaml"]
    assert "make generate" in done.stderr


def test_one_trigger_per_consumed_type_and_one_delivery_for_all() -> None:
    docs = [d for d in yaml.safe_load_all(eventing_base()["triggers.yaml"]) if d]
    names = {d["metadata"]["name"] for d in docs}
    for function in ALL.values():
        for event_type in function.consumes:
            assert trigger_name(function, event_type) in names
    deliveries = {yaml.safe_dump(d["spec"]["delivery"]) for d in docs}
    assert len(deliveries) == 1
    (delivery,) = (d["spec"]["delivery"] for d in docs[:1])
    assert delivery["retry"] == DELIVERY.retry
    assert delivery["timeout"] == f"PT{DELIVERY.timeout_seconds}S"
    labelled = {d["metadata"]["labels"]["nextup.dev/function"] for d in docs}
    assert labelled == set(ALL)


def test_every_declared_type_is_in_the_catalog() -> None:
    for function in ALL.values():
        assert set(function.consumes) | function.emits <= set(CATALOG), function.name
    assert any(PING in f.consumes for f in ALL.values())


def test_nextup_dev_without_a_checkout_runs_what_eventing_base_holds() -> None:
    from nextup_dev.manifests import load

    rendered, committed = load(None), load(ROOT / "eventing" / "base")
    assert rendered.brokers == committed.brokers
    assert rendered.kafka_sinks == committed.kafka_sinks
    assert rendered.ping_sources == committed.ping_sources
    assert rendered.triggers == committed.triggers  # name, subscriber, delivery, order
    assert [t.name for t in rendered.triggers] == [t.name for t in committed.triggers]
