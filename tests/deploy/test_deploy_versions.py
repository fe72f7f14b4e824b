"""Every version is pinned in infra/versions.env; the few files that must repeat one agree."""

from __future__ import annotations

import re

from deploy_helpers import (
    PINNED,
    ROOT,
    SCHEMAS,
    by_name,
    kind_resources,
    load_docs,
    of_kind,
    project_version,
    versions,
)

REQUIRED = PINNED
SCRIPTS = sorted((ROOT / "infra").rglob("*.sh"))


def test_every_pin_is_there_and_exact() -> None:
    pinned = versions()
    assert set(pinned) >= REQUIRED
    for key, value in pinned.items():
        assert value and "latest" not in value, f"{key} is not pinned: {value}"
    assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", pinned["KIND_NODE_IMAGE"])
    node = re.search(r"node:v([\d.]+)@", pinned["KIND_NODE_IMAGE"]).group(1)
    assert node == pinned["KUBERNETES_VERSION"]
    for key in ("SERVING", "KOURIER", "EVENTING", "KAFKA"):
        assert re.fullmatch(r"knative-v1\.22\.\d+", pinned[f"KNATIVE_{key}_VERSION"])


def test_the_crd_schemas_come_from_the_pinned_knative_tags() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    pinned = versions()
    assert f"knative/serving tag {pinned['KNATIVE_SERVING_VERSION']}" in readme
    assert f"knative/eventing tag {pinned['KNATIVE_EVENTING_VERSION']}" in readme
    assert f"eventing-kafka-broker tag {pinned['KNATIVE_KAFKA_VERSION']}" in readme


def test_images_in_manifests_are_the_pinned_ones() -> None:
    pinned = versions()
    resources = kind_resources()
    deployments = by_name(of_kind(resources, "Deployment"))
    image = lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert image(deployments["dynamodb-local"]) == pinned["DYNAMODB_LOCAL_IMAGE"]
    assert image(deployments["mailpit"]) == pinned["MAILPIT_IMAGE"]
    version = project_version()
    for resource in resources:
        for container in _containers(resource):
            if container["image"].startswith("dev.local/nextup-"):
                assert container["image"].endswith(f":{version}"), container["image"]


def test_kafka_version_is_the_pinned_one() -> None:
    (kafka,) = [
        d for d in load_docs(ROOT / "infra" / "kind" / "kafka.yaml") if d["kind"] == "Kafka"
    ]
    assert kafka["spec"]["kafka"]["version"] == versions()["KAFKA_VERSION"]


def test_scripts_read_versions_instead_of_repeating_them() -> None:
    values = [v for k, v in versions().items() if k != "KUBERNETES_VERSION"]
    for script in SCRIPTS:
        text = script.read_text()
        for value in values:
            assert value not in text, f"{script.name} repeats {value}: use infra/versions.env"
    lib = (ROOT / "infra" / "kind" / "lib.sh").read_text()
    assert 'source "$ROOT/infra/versions.env"' in lib


def _containers(resource: dict) -> list[dict]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) if isinstance(spec, dict) else []
