"""Events reach exactly the functions that handle them, on Knative and through OpenFaaS.

The Triggers are read from the rendered eventing/ (owned by the local runtime's issue and
only read here); what each function consumes and emits comes from nextup.functions.ALL and
the event catalog, so a new event type or consumer fails here until it is routed.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml
from deploy_helpers import (
    ROOT,
    by_name,
    kind_resources,
    knative_services,
    load_docs,
    of_kind,
    openfaas_eventing,
)

from nextup.catalog import consumers
from nextup.events import CATALOG, DAPR_ENVELOPE, PING
from nextup.functions import ALL

KIND = kind_resources()
OVERLAY = openfaas_eventing()
DELIVERY_FIELDS = {
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "deadLetterSink",
    "timeout",
    "retryAfterMax",
    "format",
}


def _exact(trigger: dict) -> dict[str, str]:
    """The attributes a Trigger matches exactly (`filter.attributes` or `filters[].exact`)."""
    spec = trigger["spec"]
    matched = dict((spec.get("filter") or {}).get("attributes") or {})
    for expression in spec.get("filters") or []:
        assert set(expression) == {"exact"}, f"only exact filters are read here: {expression}"
        matched.update(expression["exact"])
    return matched


def _target(trigger: dict) -> str:
    ref = trigger["spec"]["subscriber"]["ref"]
    assert ref["apiVersion"] == "serving.knative.dev/v1" and ref["kind"] == "Service"
    return ref["name"]


def _routes(triggers: list[dict]) -> dict[str, set[str]]:
    routed: dict[str, set[str]] = defaultdict(set)
    for trigger in triggers:
        routed[_exact(trigger)["type"]].add(_target(trigger))
    return routed


TRIGGERS = of_kind(KIND, "Trigger")


def test_the_catalog_lists_the_declared_consumers_and_no_function_as_audience() -> None:
    for event_type, entry in CATALOG.items():
        consuming = tuple(name for name, f in ALL.items() if event_type in f.consumes)
        assert consumers(entry)[: len(consuming)] == consuming, event_type
        assert not set(entry.audience) & set(ALL), f"{event_type}: declare it in the function"
        assert consumers(entry), f"{event_type}: nobody reads it"


@pytest.mark.parametrize("event_type", sorted(CATALOG))
def test_each_event_type_reaches_exactly_its_consumers(event_type: str) -> None:
    consumers = {name for name, f in ALL.items() if event_type in f.consumes}
    assert _routes(TRIGGERS).get(event_type, set()) == consumers


def test_every_trigger_is_for_a_catalog_type_or_the_dapr_envelope() -> None:
    for trigger in TRIGGERS:
        event_type = _exact(trigger)["type"]
        assert event_type in CATALOG or event_type == DAPR_ENVELOPE, trigger["metadata"]["name"]


def test_no_trigger_sends_a_function_its_own_emitted_types() -> None:
    for trigger in TRIGGERS:
        function = ALL[_target(trigger)]
        assert _exact(trigger)["type"] not in function.emits, trigger["metadata"]["name"]


def test_ping_triggers_tell_their_pingsources_apart() -> None:
    sources = by_name(of_kind(KIND, "PingSource"))
    ping_triggers = [t for t in TRIGGERS if _exact(t)["type"] == PING]
    seen = set()
    for trigger in ping_triggers:
        source = _exact(trigger)["source"]
        name = source.rsplit("/", 1)[-1]
        assert source == f"/apis/v1/namespaces/nextup/pingsources/{name}"
        assert name in sources
        sink = sources[name]["spec"]["sink"]["ref"]
        assert (sink["kind"], sink["name"]) == ("Broker", trigger["spec"]["broker"])
        seen.add(name)
    assert seen == set(sources), "a PingSource that no Trigger listens to"


def test_triggers_point_at_real_services_broker_and_dead_letter_sink() -> None:
    services = knative_services(KIND)
    brokers = by_name(of_kind(KIND, "Broker"))
    sinks = by_name(of_kind(KIND, "KafkaSink"))
    labels = set()
    for trigger in TRIGGERS:
        name = trigger["metadata"]["name"]
        assert trigger["spec"]["broker"] in brokers, name
        assert _target(trigger) in services, name
        function = trigger["metadata"]["labels"]["nextup.dev/function"]
        assert function == _target(trigger), name
        labels.add(function)
        delivery = trigger["spec"]["delivery"]
        assert set(delivery) <= DELIVERY_FIELDS, f"{name}: unknown delivery field"
        assert delivery["backoffPolicy"] in ("linear", "exponential")
        assert delivery["timeout"].startswith("PT") and delivery["backoffDelay"].startswith("PT")
        assert delivery["retry"] >= 1
        dead = delivery["deadLetterSink"]["ref"]
        assert dead["kind"] == "KafkaSink" and dead["name"] in sinks, name
    assert labels == set(ALL)


def test_kafka_addresses_match_the_strimzi_cluster() -> None:
    docs = {d["kind"]: d for d in load_docs(ROOT / "infra" / "kind" / "kafka.yaml")}
    kafka = docs["Kafka"]
    (listener,) = [item for item in kafka["spec"]["kafka"]["listeners"] if not item["tls"]]
    bootstrap = (
        f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc"
        f":{listener['port']}"
    )
    config = by_name(of_kind(KIND, "ConfigMap"))["kafka-broker-config"]["data"]
    assert config["bootstrap.servers"] == bootstrap
    for sink in of_kind(KIND, "KafkaSink"):
        assert sink["spec"]["bootstrapServers"] == [bootstrap]
    # One Kafka node: a replication factor above one could never be met.
    assert config["default.topic.replication.factor"] == "1"


def test_the_openfaas_overlay_routes_the_same_triggers_to_the_gateway() -> None:
    base = {t["metadata"]["name"]: t for t in TRIGGERS}
    routed = {t["metadata"]["name"]: t for t in of_kind(OVERLAY, "Trigger")}
    assert set(routed) == set(base)
    for name, trigger in routed.items():
        function = trigger["metadata"]["labels"]["nextup.dev/function"]
        assert trigger["spec"]["subscriber"] == {
            "uri": f"http://gateway.openfaas.svc:8080/function/{function}"
        }
        expected = {k: v for k, v in base[name]["spec"].items() if k != "subscriber"}
        assert {k: v for k, v in trigger["spec"].items() if k != "subscriber"} == expected
    # Everything else of eventing/ comes along unchanged.
    eventing = [
        r
        for r in KIND
        if r["kind"] in ("Broker", "KafkaSink", "PingSource")
        or r["metadata"]["name"] == "kafka-broker-config"
    ]
    assert _dumped(r for r in OVERLAY if r["kind"] != "Trigger") == _dumped(eventing)


def _dumped(resources) -> list[str]:
    return sorted(yaml.safe_dump(r, sort_keys=True) for r in resources)


def test_the_overlay_builds_on_the_whole_base() -> None:
    # `kubectl apply -k eventing/overlays/openfaas` must need no load-restrictor flag: the
    # overlay takes the base directory whole, so a file added there comes along.
    base = yaml.safe_load((ROOT / "eventing" / "base" / "kustomization.yaml").read_text())
    overlay = yaml.safe_load(
        (ROOT / "eventing" / "overlays" / "openfaas" / "kustomization.yaml").read_text()
    )
    assert overlay["resources"] == ["../../base"]
    assert overlay["namespace"] == base["namespace"]
