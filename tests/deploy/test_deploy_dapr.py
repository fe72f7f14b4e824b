"""infra/dapr: the Kafka pub/sub component and the `dapr run -f` file start the four
functions, each beside a sidecar, with what the functions expect of Dapr (daprd cannot run
here: these are checked against the function declarations and the settings instead)."""

from __future__ import annotations

import shlex

import yaml
from deploy_helpers import ROOT

from nextup.config import Settings
from nextup.functions import ALL, DAPR_TOPICS

DAPR = ROOT / "infra" / "dapr"


def test_the_pubsub_component_is_the_one_the_functions_publish_to() -> None:
    component = yaml.safe_load((DAPR / "components" / "kafka-pubsub.yaml").read_text())
    assert component["apiVersion"] == "dapr.io/v1alpha1" and component["kind"] == "Component"
    assert component["spec"]["type"] == "pubsub.kafka"
    assert component["metadata"]["name"] == Settings.model_fields["dapr_pubsub"].default
    metadata = {m["name"]: m["value"] for m in component["spec"]["metadata"]}
    assert metadata["brokers"] and metadata["authType"] == "none"
    # Each app its own consumer group: every function sees every event of its topics.
    assert metadata["consumerGroup"] == "{appID}"


def test_the_run_file_starts_each_function_beside_its_own_sidecar() -> None:
    run = yaml.safe_load((DAPR / "dapr.yaml").read_text())
    assert run["version"] == 1
    assert (DAPR / run["common"]["resourcesPath"]).is_dir()
    apps = {app["appID"]: app for app in run["apps"]}
    assert set(apps) == set(ALL)
    ports = [app["appPort"] for app in apps.values()]
    sidecars = [app["daprHTTPPort"] for app in apps.values()]
    assert len(set(ports + sidecars)) == 2 * len(apps), "every port once"
    for name, app in apps.items():
        root = (DAPR / app["appDirPath"]).resolve()
        assert root == ROOT.resolve()
        argv = app["command"]
        assert argv[0].endswith("functions-framework"), shlex.join(argv)
        flags = dict(zip(argv[1::2], argv[2::2], strict=True))
        assert flags["--source"] == f"functions/{name}/main.py"
        assert (root / flags["--source"]).is_file()
        assert flags["--target"] == "handle" and int(flags["--port"]) == app["appPort"]


def test_every_emitted_type_goes_to_a_topic_a_function_or_the_app_listens_on() -> None:
    subscribed = {f.dapr_topic for f in ALL.values()}
    for function in ALL.values():
        for type_ in function.emits:
            assert DAPR_TOPICS[type_] in subscribed, type_
            consumers = [f for f in ALL.values() if type_ in f.consumes]
            for consumer in consumers:
                assert DAPR_TOPICS[type_] == consumer.dapr_topic, (type_, consumer.name)
