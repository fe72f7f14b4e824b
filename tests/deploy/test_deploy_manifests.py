"""Every manifest validates as the API server would take it.

Knative resources against the CRD openAPIV3Schema of the pinned release (strict: unknown
fields refused), core resources with kubernetes-validate (strict) at the kind node's version.
The negative cases show each validator does refuse what the API server would.
"""

from __future__ import annotations

import copy

import pytest
from deploy_helpers import (
    ROOT,
    by_name,
    core_errors,
    is_knative,
    kind_resources,
    knative_errors,
    load_docs,
    of_kind,
    openfaas_eventing,
)

KIND = kind_resources()
OVERLAY = openfaas_eventing()


def _id(resource: dict) -> str:
    return f"{resource['kind']}/{resource['metadata']['name']}"


@pytest.mark.parametrize("resource", KIND, ids=_id)
def test_kind_resources_validate(resource: dict) -> None:
    errors = knative_errors(resource) if is_knative(resource) else core_errors(resource)
    assert errors == [], f"{_id(resource)}:\n" + "\n".join(errors)


@pytest.mark.parametrize("resource", OVERLAY, ids=_id)
def test_openfaas_overlay_resources_validate(resource: dict) -> None:
    errors = knative_errors(resource) if is_knative(resource) else core_errors(resource)
    assert errors == [], f"{_id(resource)}:\n" + "\n".join(errors)


def test_the_kind_render_has_what_the_functions_need() -> None:
    kinds = {(r["apiVersion"].split("/")[0], r["kind"]) for r in KIND}
    for expected in [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("serving.knative.dev", "Service"),
        ("sources.knative.dev", "SinkBinding"),
        ("eventing.knative.dev", "Broker"),
        ("eventing.knative.dev", "Trigger"),
        ("eventing.knative.dev", "KafkaSink"),
        ("sources.knative.dev", "PingSource"),
        ("apps", "Deployment"),
        ("batch", "Job"),
    ]:
        assert expected in kinds, expected
    # Everything lands in the one namespace the Namespace creates.
    namespaced = [r for r in KIND if r["kind"] != "Namespace"]
    assert {r["metadata"]["namespace"] for r in namespaced} == {"nextup"}


def test_every_secret_and_configmap_reference_resolves() -> None:
    configmaps = by_name(of_kind(KIND, "ConfigMap"))
    secrets = by_name(of_kind(KIND, "Secret"))
    references = 0
    for resource in KIND:
        spec = _pod_spec(resource)
        if spec is None:
            continue
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
                references += 1
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secret = secrets[ref["name"]]
                    assert ref["key"] in secret.get("stringData", secret.get("data", {}))
                    references += 1
    assert references >= 10


def test_workloads_do_not_run_as_root() -> None:
    for resource in KIND:
        spec = _pod_spec(resource)
        if spec is None:
            continue
        for container in spec["containers"]:
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, _id(resource)
            assert context.get("capabilities", {}).get("drop") == ["ALL"], _id(resource)
            assert "resources" in container and container["resources"].get("limits"), _id(resource)


def test_the_store_init_job_runs_nextup_store_init_with_the_function_settings() -> None:
    job = by_name(of_kind(KIND, "Job"))["nextup-store-init"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in ("OnFailure", "Never")
    container = spec["containers"][0]
    assert container["command"] == ["nextup", "store", "init"]
    ksvc_container = by_name(of_kind(KIND, "Service", "serving.knative.dev"))["health"]["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert container["image"] == ksvc_container["image"]
    assert container["envFrom"] == ksvc_container["envFrom"]
    config = by_name(of_kind(KIND, "ConfigMap"))["nextup-config"]["data"]
    assert config["NEXTUP_STORE_URL"].startswith("dynamodb://")


def test_strimzi_kafka_is_a_single_kraft_node() -> None:
    # No Strimzi schema ships here: check the shape the operator needs for KRaft.
    docs = {d["kind"]: d for d in load_docs(ROOT / "infra" / "kind" / "kafka.yaml")}
    assert set(docs) == {"Kafka", "KafkaNodePool"}
    pool, kafka = docs["KafkaNodePool"], docs["Kafka"]
    assert all(d["apiVersion"] == "kafka.strimzi.io/v1beta2" for d in docs.values())
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 1
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["offsets.topic.replication.factor"] == 1
    assert config["min.insync.replicas"] == 1


def test_the_validators_refuse_what_the_api_server_would() -> None:
    ksvc = copy.deepcopy(by_name(of_kind(KIND, "Service", "serving.knative.dev"))["health"])
    container = ksvc["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/typo"
    container["ports"][0]["containerPort"] = "8080"
    errors = knative_errors(ksvc)
    assert any("paht" in e for e in errors)
    assert any("containerPort" in e for e in errors)

    trigger = copy.deepcopy(of_kind(KIND, "Trigger")[0])
    trigger["spec"]["subscriber"]["url"] = "http://x"
    assert any("url" in e for e in knative_errors(trigger))

    configmap = copy.deepcopy(by_name(of_kind(KIND, "ConfigMap"))["nextup-config"])
    configmap["data"]["NEXTUP_RETRY_BUDGET"] = 8
    assert core_errors(configmap)

    job = copy.deepcopy(of_kind(KIND, "Job")[0])
    job["spec"]["template"]["spec"]["containers"][0]["envFrom"] = {"configMapRef": {}}
    assert core_errors(job)

    named = copy.deepcopy(of_kind(KIND, "Trigger")[0])
    named["metadata"]["name"] = "Not_A_Name"
    assert knative_errors(named)


def _pod_spec(resource: dict) -> dict | None:
    if resource["kind"] == "Service" and is_knative(resource):
        return resource["spec"]["template"]["spec"]
    if resource["kind"] in ("Deployment", "Job"):
        return resource["spec"]["template"]["spec"]
    return None
