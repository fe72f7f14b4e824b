"""What the deployment tests share: the repository's artifacts, read the way their tools read them.

No cluster, Docker engine or OpenFaaS gateway runs here, so every artifact is checked by
construction: Knative resources against the CRD schemas of the pinned release (strict, as the
API server's field validation is), core resources against Kubernetes' own schemas
(kubernetes-validate), kustomizations rendered by the real kustomize inside the `kubectl`
wheel of the dev extra, the Dockerfile parsed by Docker's own parser (`dockerfile`).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT.parent / "shared" / "schemas" / "knative-v1.22"
BIN = Path(sys.executable).parent
KNATIVE_GROUPS = (
    "serving.knative.dev",
    "eventing.knative.dev",
    "sources.knative.dev",
    "messaging.knative.dev",
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Resource = dict[str, Any]


def tool(name: str) -> str:
    """A command-line tool from the dev extra, in the test interpreter's own environment."""
    path = BIN / name
    if not path.exists():
        raise AssertionError(f"{name} is missing from {BIN}: install the dev extra (make test)")
    return str(path)


def load_docs(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_stream(text: str) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# Every pin infra/versions.env must hold (the guide's version table names them too).
PINNED = frozenset(
    {
        "PYTHON_IMAGE",
        "KIND_VERSION",
        "KIND_NODE_IMAGE",
        "KUBERNETES_VERSION",
        "KNATIVE_SERVING_VERSION",
        "KNATIVE_KOURIER_VERSION",
        "KNATIVE_EVENTING_VERSION",
        "KNATIVE_KAFKA_VERSION",
        "STRIMZI_VERSION",
        "KAFKA_VERSION",
        "DYNAMODB_LOCAL_IMAGE",
        "MAILPIT_IMAGE",
        "OPENFAAS_CHART_VERSION",
        "CRON_CONNECTOR_CHART_VERSION",
    }
)


@functools.cache
def versions() -> dict[str, str]:
    """infra/versions.env as the scripts see it (KEY=VALUE lines, # comments)."""
    pinned = {}
    for line in (ROOT / "infra" / "versions.env").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"bad line in versions.env: {line}"
        assert not value.startswith(("'", '"')) and " " not in value, line
        pinned[key] = value
    return pinned


@functools.cache
def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# Kustomize, as kubectl carries it.


@functools.cache
def kustomize(path: str) -> tuple[Resource, ...]:
    command = [tool("kubectl"), "kustomize", str(ROOT / path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kustomize {path} failed:\n{done.stderr}"
    return tuple(load_stream(done.stdout))


def kind_resources() -> list[Resource]:
    """Everything `kubectl apply -k infra/kind` creates."""
    return copy.deepcopy(list(kustomize("infra/kind")))


def openfaas_eventing() -> list[Resource]:
    """The eventing overlay for OpenFaaS, rendered as docs/DEPLOY.md renders it."""
    return copy.deepcopy(list(kustomize("eventing/overlays/openfaas")))


def of_kind(resources: list[Resource], kind: str, api_group: str | None = None) -> list[Resource]:
    return [
        r
        for r in resources
        if r["kind"] == kind and (api_group is None or r["apiVersion"].startswith(api_group + "/"))
    ]


def by_name(resources: list[Resource]) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources}


def knative_services(resources: list[Resource]) -> dict[str, Resource]:
    return by_name(of_kind(resources, "Service", "serving.knative.dev"))


# Schemas.


def _strict(schema: Any) -> Any:
    """The API server rejects unknown fields (kubectl's default field validation is Strict):
    every object schema that lists its properties and does not preserve unknown fields gets
    additionalProperties: false."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema, made strict."""
    assert SCHEMAS.is_dir(), f"the Knative CRD schemas are missing: {SCHEMAS}"
    schemas = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        for doc in load_docs(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served") and "schema" in version:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    # The API server always accepts these three at the root, listed or not.
                    properties = schema.setdefault("properties", {})
                    properties.setdefault("apiVersion", {"type": "string"})
                    properties.setdefault("kind", {"type": "string"})
                    properties.setdefault("metadata", {"type": "object"})
                    schemas[key] = _strict(schema)
    return schemas


def is_knative(resource: Resource) -> bool:
    return resource["apiVersion"].split("/")[0] in KNATIVE_GROUPS


def knative_errors(resource: Resource) -> list[str]:
    """Why the API server would refuse this Knative resource (empty: it would not)."""
    key = (resource["apiVersion"], resource["kind"])
    schema = crd_schemas().get(key)
    if schema is None:
        return [f"no CRD schema for {key} in {SCHEMAS}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(resource)
    ]
    return errors + metadata_errors(resource)


def core_errors(resource: Resource) -> list[str]:
    """kubernetes-validate, strict, at the Kubernetes version of the kind node."""
    try:
        kubernetes_validate.validate(resource, versions()["KUBERNETES_VERSION"], strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return metadata_errors(resource)


def metadata_errors(resource: Resource) -> list[str]:
    meta = resource.get("metadata") or {}
    problems = []
    name = meta.get("name", "")
    if not DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS label")
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            if not isinstance(value, str):
                problems.append(f"metadata.{field}.{key} must be a string, not {value!r}")
    return problems


# The environment the code reads.


def setting_names() -> set[str]:
    """Every name nextup.config.Settings reads a value under: environment variables, and the
    secret file names its aliases allow (OpenFaaS mounts secrets as files)."""
    from pydantic import AliasChoices

    from nextup.config import Settings

    prefix = Settings.model_config["env_prefix"]
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add((prefix + field_name).upper())
    return names


def setting_env_names() -> set[str]:
    return {name for name in setting_names() if ENV_NAME.match(name)}


def setting_secret_files() -> set[str]:
    return {name for name in setting_names() if not ENV_NAME.match(name)}


ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")

# What boto3 reads for DynamoDB (see nextup/store/dynamodb.py).
AWS_ENV = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
}


def allowed_env_names() -> set[str]:
    return setting_env_names() | AWS_ENV


# stack.yml, read as faas-cli reads it.

_SUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def envsubst(text: str, env: dict[str, str] | None = None) -> str:
    """faas-cli substitutes ${VAR} and ${VAR:-default} in the stack file before parsing it."""
    env = {} if env is None else env
    return _SUBST.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def stack(env: dict[str, str] | None = None) -> dict[str, Any]:
    return yaml.safe_load(envsubst((ROOT / "stack.yml").read_text(), env))


def environment_files(function: dict[str, Any]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in function.get("environment_file") or []:
        doc = yaml.safe_load((ROOT / name).read_text())
        assert set(doc) == {"environment"}, f"{name}: only an `environment` map is read"
        merged.update(doc["environment"])
    return merged


# Dockerfile and build contexts.


def dockerfile_commands(path: Path = ROOT / "Dockerfile") -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(path))


def stages(commands: tuple[dockerfile.Command, ...]) -> list[list[dockerfile.Command]]:
    """The commands of each build stage, FROM first; global ARGs before the first FROM dropped."""
    result: list[list[dockerfile.Command]] = []
    for command in commands:
        if command.cmd == "FROM":
            result.append([command])
        elif result:
            result[-1].append(command)
    return result


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match, plus `**` for any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def _matches(pattern: str, relpath: str) -> bool:
    regex = _pattern_regex(pattern.strip("/"))
    parts = relpath.split("/")
    # A pattern excludes a path when it matches the path or one of its parent directories.
    return any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1))


def ignored(context: Path, relpath: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    excluded = False
    for pattern in dockerignore_patterns(context):
        negate = pattern.startswith("!")
        if _matches(pattern.lstrip("!"), relpath):
            excluded = not negate
    return excluded


def context_files(context: Path) -> set[str]:
    files = set()
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames[:] = [d for d in dirnames if d not in {".git", ".venv"}]
        for filename in filenames:
            rel = os.path.relpath(os.path.join(dirpath, filename), context).replace(os.sep, "/")
            if not ignored(context, rel):
                files.add(rel)
    return files


def faas_cli_context(function: str, destination: Path) -> Path:
    """The build context `faas-cli build` makes for a `dockerfile`-language function: the
    handler folder's contents, then each `configuration.copy` path at the same relative place
    (github.com/openfaas/go-sdk builder.CreateBuildContext, language "dockerfile")."""
    spec = stack()
    handler = ROOT / spec["functions"][function]["handler"]
    context = destination / "build" / function
    context.mkdir(parents=True)
    for entry in handler.iterdir():
        if entry.name in {"build", "template"}:
            continue
        _copy(entry, context / entry.name)
    for extra in spec["configuration"]["copy"]:
        source = (ROOT / extra).resolve()
        assert source != ROOT and ROOT in source.parents, f"copy path {extra} leaves the project"
        _copy(source, context / Path(extra))
    return context


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".venv"))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def copy_sources(build_args: dict[str, str]) -> Iterator[str]:
    """The context paths every COPY/ADD of the Dockerfile reads (not --from other stages)."""
    for command in dockerfile_commands():
        if command.cmd not in ("COPY", "ADD"):
            continue
        if any(flag.startswith("--from=") for flag in command.flags):
            continue
        for source in command.value[:-1]:
            yield re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], source)
