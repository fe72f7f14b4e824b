"""stack.yml holds what faas-cli needs to build, push and deploy the four functions.

faas-cli is not run here (no Docker engine, no gateway). Instead the file is read the way
faas-cli reads it (envsubst, then YAML), its fields checked against what faas-cli's stack
schema and the `dockerfile` template require, and the build context faas-cli assembles is
rebuilt by the same rules to show the Dockerfile finds every file it copies.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_helpers import (
    ROOT,
    allowed_env_names,
    context_files,
    copy_sources,
    environment_files,
    faas_cli_context,
    project_version,
    setting_secret_files,
    stack,
)

from nextup.functions import ALL
from nextup.runtime import LIVENESS, READINESS

RAW = (ROOT / "stack.yml").read_text()
STACK = stack()
FUNCTIONS = STACK["functions"]
# Fields of a function in faas-cli's stack schema (stack.Function) that this file may use.
FUNCTION_FIELDS = {
    "lang",
    "handler",
    "image",
    "build_args",
    "environment",
    "environment_file",
    "secrets",
    "labels",
    "annotations",
    "limits",
    "requests",
    "readonly_root_filesystem",
}
CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON = re.compile(rf"^{CRON_FIELD}( {CRON_FIELD}){{4}}$")
MEMORY = re.compile(r"^\d+Mi$")
CPU = re.compile(r"^\d+m$|^\d+$")


def test_the_stack_header() -> None:
    assert re.search(r"^version: 1\.0$", RAW, re.M)
    assert str(STACK["version"]) == "1.0"
    assert STACK["provider"] == {"name": "openfaas", "gateway": "http://127.0.0.1:8080"}
    assert "gateway: ${OPENFAAS_URL:-http://127.0.0.1:8080}" in RAW
    assert stack({"OPENFAAS_URL": "http://gw:8080"})["provider"]["gateway"] == "http://gw:8080"
    assert STACK["configuration"]["templates"] == [{"name": "dockerfile"}]


def test_the_four_functions() -> None:
    assert set(FUNCTIONS) == set(ALL)
    for name, function in FUNCTIONS.items():
        assert set(function) <= FUNCTION_FIELDS, f"{name}: {set(function) - FUNCTION_FIELDS}"


@pytest.mark.parametrize("name", sorted(ALL))
def test_build_fields(name: str) -> None:
    function = FUNCTIONS[name]
    assert function["lang"] == "dockerfile"
    handler = ROOT / function["handler"]
    assert handler.is_dir() and (handler / "main.py").is_file()
    assert function["build_args"] == {"FUNCTION": name}
    pattern = rf"image: \$\{{REGISTRY:-dev\.local\}}/nextup-{name}:\$\{{TAG:-([^}}]+)\}}"
    defaults = re.findall(pattern, RAW)
    assert defaults == [project_version()], "the default tag is the project version"
    image = stack({"REGISTRY": "ghcr.io/acme", "TAG": "1.2.3"})["functions"][name]["image"]
    assert image == f"ghcr.io/acme/nextup-{name}:1.2.3"


def test_copy_paths_stay_inside_the_project() -> None:
    for path in STACK["configuration"]["copy"]:
        resolved = (ROOT / path).resolve()
        assert resolved.exists(), path
        assert resolved != ROOT and ROOT in resolved.parents, path


@pytest.mark.parametrize("name", sorted(ALL))
def test_faas_cli_build_context_has_every_file_the_dockerfile_copies(
    name: str, tmp_path: Path
) -> None:
    context = faas_cli_context(name, tmp_path)
    assert (context / "Dockerfile").read_text() == (ROOT / "Dockerfile").read_text()
    files = context_files(context)
    for source in copy_sources({"FUNCTION": name}):
        present = source in files or any(f.startswith(source.rstrip("/") + "/") for f in files)
        assert present, f"{source} is not in faas-cli's build context for {name}"


@pytest.mark.parametrize("name", sorted(ALL))
def test_docker_build_from_the_repository_root_finds_the_same_files(name: str) -> None:
    files = context_files(ROOT)
    for source in copy_sources({"FUNCTION": name}):
        present = source in files or any(f.startswith(source.rstrip("/") + "/") for f in files)
        assert present, f"{source} is excluded from or missing in the repository context"
    assert not any(f.startswith((".venv/", "tests/", ".git/")) for f in files)


@pytest.mark.parametrize("name", sorted(ALL))
def test_environment_names_are_settings_the_code_reads(name: str) -> None:
    function = FUNCTIONS[name]
    merged = {**environment_files(function), **function["environment"]}
    unknown = set(merged) - allowed_env_names()
    assert not unknown, f"{name}: {unknown} are read by nothing"
    assert all(isinstance(v, str) and v for v in merged.values()), "empty values break boto3"
    assert merged["NEXTUP_STORE_URL"].startswith("dynamodb://")
    if "sink" in ALL[name].dependencies:
        assert merged["NEXTUP_SINK"].startswith("http")
    # The managed example must stay readable by the code too.
    managed = environment_files({"environment_file": ["infra/openfaas/managed.yml"]})
    assert set(managed) <= allowed_env_names()


@pytest.mark.parametrize("name", sorted(ALL))
def test_secrets_are_files_the_code_reads(name: str) -> None:
    function = FUNCTIONS[name]
    secrets = set(function["secrets"])
    env = function["environment"]
    # AWS credentials: boto3 reads the mounted secret as a shared credentials file.
    assert "nextup-aws-credentials" in secrets
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/var/openfaas/secrets/nextup-aws-credentials"
    wants_smtp = "smtp" in ALL[name].dependencies or ALL[name].report
    assert ("nextup-smtp-password" in secrets) == wants_smtp
    # Every other secret is a file name Settings reads from /var/openfaas/secrets.
    assert secrets - {"nextup-aws-credentials"} <= setting_secret_files()


@pytest.mark.parametrize("name", sorted(ALL))
def test_scaling_labels_resources_and_probes(name: str) -> None:
    function = FUNCTIONS[name]
    labels = function["labels"]
    assert all(isinstance(v, str) for v in labels.values()), "labels are strings for Kubernetes"
    low, high = int(labels["com.openfaas.scale.min"]), int(labels["com.openfaas.scale.max"])
    assert 1 <= low <= high
    assert int(labels["com.openfaas.scale.target"]) >= 1
    assert labels["com.openfaas.scale.type"] in ("rps", "capacity", "cpu")
    assert labels["com.openfaas.scale.zero"] == "false", "scale to zero is OpenFaaS Pro only"
    for kind in ("requests", "limits"):
        assert MEMORY.match(function[kind]["memory"]) and CPU.match(function[kind]["cpu"])
    annotations = function["annotations"]
    assert annotations["com.openfaas.ready.http.path"] in READINESS
    assert annotations["com.openfaas.health.http.path"] in LIVENESS
    assert annotations["com.openfaas.health.http.path"].startswith("/_/")
    assert function["readonly_root_filesystem"] is True


@pytest.mark.parametrize("name", sorted(ALL))
def test_cron_connector_annotations_only_where_a_tick_is_handled(name: str) -> None:
    annotations = FUNCTIONS[name]["annotations"]
    if ALL[name].ticks:
        # The community cron-connector only picks functions whose topic is exactly this.
        assert annotations["topic"] == "cron-function"
        assert CRON.match(annotations["schedule"]), annotations["schedule"]
    else:
        assert "topic" not in annotations and "schedule" not in annotations


def test_the_cron_pattern_refuses_bad_schedules() -> None:
    assert CRON.match("*/5 * * * *") and CRON.match("0 9 * * 1-5")
    assert not CRON.match("* * * *") and not CRON.match("every minute")
