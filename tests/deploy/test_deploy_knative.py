"""The Knative Services: one per function, scaling to zero, probed where the code answers."""

from __future__ import annotations

import asyncio
import re

import pytest
from deploy_helpers import (
    by_name,
    dockerfile_commands,
    kind_resources,
    knative_services,
    of_kind,
    project_version,
    stages,
)

from nextup.functions import ALL
from nextup.runtime import LIVENESS, READINESS, App

KIND = kind_resources()
SERVICES = knative_services(KIND)
SCALE = "autoscaling.knative.dev/"
DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")


def _container(name: str) -> dict:
    containers = SERVICES[name]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _image_port() -> int:
    final = stages(dockerfile_commands())[-1]
    (cmd,) = [c for c in final if c.cmd == "CMD"]
    args = list(cmd.value)
    return int(args[args.index("--port") + 1])


def test_one_knative_service_per_function() -> None:
    assert set(SERVICES) == set(ALL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_scale_to_zero_sits_on_the_revision_template(name: str) -> None:
    service = SERVICES[name]
    on_service = service["metadata"].get("annotations", {})
    assert not [key for key in on_service if key.startswith(SCALE)], (
        "autoscaling annotations on the Service's own metadata are ignored by Knative"
    )
    template = service["spec"]["template"]["metadata"]["annotations"]
    assert template[SCALE + "min-scale"] == "0"
    assert int(template[SCALE + "max-scale"]) >= 1
    assert int(template[SCALE + "target"]) >= 1
    assert DURATION.match(template[SCALE + "scale-to-zero-pod-retention-period"])
    assert template[SCALE + "class"] == "kpa.autoscaling.knative.dev", "only the KPA scales to 0"
    assert all(isinstance(v, str) for v in template.values())


@pytest.mark.parametrize("name", sorted(ALL))
def test_probes_use_the_health_routes_on_the_image_port(name: str) -> None:
    container = _container(name)
    (port,) = container["ports"]
    assert port["containerPort"] == _image_port() == 8080
    assert port["name"] in ("http1", "h2c")
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] in READINESS and readiness["path"].startswith("/health/")
    assert liveness["path"] in LIVENESS and liveness["path"].startswith("/health/")
    assert readiness["port"] == liveness["port"] == port["containerPort"]


@pytest.mark.parametrize("name", sorted(ALL))
def test_the_liveness_route_answers_in_the_function(name: str) -> None:
    path = _container(name)["livenessProbe"]["httpGet"]["path"]
    response = asyncio.run(App(ALL[name]).get(path))
    assert response.status_code == 200


@pytest.mark.parametrize("name", sorted(ALL))
def test_resources_and_settings(name: str) -> None:
    container = _container(name)
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert container["envFrom"] == [{"configMapRef": {"name": "nextup-config"}}]
    secret_refs = {
        e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
    }
    assert secret_refs == {"nextup-secrets"}
    env = {e["name"] for e in container["env"]}
    function = ALL[name]
    wants_smtp = "smtp" in function.dependencies or function.report
    assert ("NEXTUP_SMTP_PASSWORD" in env) == wants_smtp
    assert "K_SINK" not in env, "K_SINK comes from the SinkBinding, not the manifest"
    assert "PORT" not in env, "Knative sets PORT itself and refuses it in the manifest"


@pytest.mark.parametrize("name", sorted(ALL))
def test_image_and_user_match_the_dockerfile(name: str) -> None:
    container = _container(name)
    assert container["image"] == f"dev.local/nextup-{name}:{project_version()}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    final = stages(dockerfile_commands())[-1]
    (user,) = [c for c in final if c.cmd == "USER"]
    uid = int(user.value[0].split(":")[0])
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == uid
    assert context["readOnlyRootFilesystem"] is True
    # gunicorn writes its worker heartbeats under /tmp: it must be writable.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in SERVICES[name]["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_a_sinkbinding_exactly_for_the_functions_that_emit_more_than_a_reply() -> None:
    bindings = of_kind(KIND, "SinkBinding")
    bound = set()
    for binding in bindings:
        subject = binding["spec"]["subject"]
        assert subject["apiVersion"] == "serving.knative.dev/v1" and subject["kind"] == "Service"
        assert subject["name"] in SERVICES
        bound.add(subject["name"])
        sink = binding["spec"]["sink"]["ref"]
        assert sink["kind"] == "Broker"
        assert sink["name"] in by_name(of_kind(KIND, "Broker"))
    assert bound == {name for name, f in ALL.items() if "sink" in f.dependencies}
    namespace = of_kind(KIND, "Namespace")[0]
    assert namespace["metadata"]["labels"]["bindings.knative.dev/include"] == "true"


def test_functions_stay_inside_the_cluster() -> None:
    for service in SERVICES.values():
        assert service["metadata"]["labels"]["networking.knative.dev/visibility"] == (
            "cluster-local"
        )
