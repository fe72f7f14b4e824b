"""The Dockerfile, read by Docker's own parser: multi-stage, no build tools in the final
stage, an unprivileged user, functions-framework on 8080; and its pinned dependencies."""

from __future__ import annotations

import re

import dockerfile
import pytest
from deploy_helpers import ROOT, dockerfile_commands, stages, versions
from packaging.requirements import Requirement

PACKAGE_MANAGERS = re.compile(r"\b(apt-get|apt|apk|dnf|yum|microdnf)\b")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev)\b")


def rule_violations(commands: tuple[dockerfile.Command, ...]) -> list[str]:
    """What breaks the image rules: several stages, the last one built from a copied
    virtualenv only, no package manager or compiler there, and a numeric non-root USER."""
    problems = []
    parts = stages(commands)
    if len(parts) < 2:
        problems.append("not a multi-stage build")
        return problems
    final = parts[-1]
    for command in final:
        text = " ".join(command.value)
        if command.cmd == "RUN" and (PACKAGE_MANAGERS.search(text) or BUILD_TOOLS.search(text)):
            problems.append(f"final stage installs or builds: {command.original}")
        if command.cmd == "RUN" and re.search(r"\bpip3?\b.*\binstall\b", text):
            problems.append(f"final stage runs pip install: {command.original}")
    users = [c for c in final if c.cmd == "USER"]
    if not users:
        problems.append("final stage has no USER: it would run as root")
    else:
        user = users[-1].value[0].split(":")[0]
        if not user.isdigit() or int(user) == 0:
            problems.append(f"USER {user} is not a numeric non-root uid")
    if not any(c.cmd == "COPY" and any(f.startswith("--from=") for f in c.flags) for c in final):
        problems.append("final stage copies nothing from the build stage")
    return problems


COMMANDS = dockerfile_commands()
STAGES = stages(COMMANDS)


def test_the_dockerfile_follows_the_image_rules() -> None:
    assert rule_violations(COMMANDS) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('FROM python:3.12-slim\nRUN pip install .\nCMD ["x"]\n', "multi-stage"),
        (
            "FROM python:3.12-slim AS b\nRUN true\nFROM python:3.12-slim\n"
            "COPY --from=b /a /a\nRUN apt-get update && apt-get install -y gcc\nUSER 10001\n",
            "installs or builds",
        ),
        (
            "FROM python:3.12-slim AS b\nFROM python:3.12-slim\nCOPY --from=b /a /a\n",
            "no USER",
        ),
        (
            "FROM python:3.12-slim AS b\nFROM python:3.12-slim\nCOPY --from=b /a /a\nUSER root\n",
            "not a numeric non-root",
        ),
    ],
)
def test_the_rules_catch_a_bad_dockerfile(text: str, problem: str) -> None:
    problems = rule_violations(dockerfile.parse_string(text))
    assert any(problem in p for p in problems), problems


def test_both_stages_start_from_the_pinned_slim_base() -> None:
    (arg,) = [c for c in COMMANDS if c.cmd == "ARG" and c.value[0].startswith("PYTHON_IMAGE=")]
    assert arg.value[0] == f"PYTHON_IMAGE={versions()['PYTHON_IMAGE']}"
    assert "-slim" in versions()["PYTHON_IMAGE"]
    assert [s[0].value[0] for s in STAGES] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert [s[0].value[-1] for s in STAGES] == ["build", "runtime"]


def test_the_build_stage_installs_wheels_only_with_the_pinned_constraints() -> None:
    build = STAGES[0]
    runs = " ".join(" ".join(c.value) for c in build if c.cmd == "RUN")
    assert "--only-binary=:all:" in runs, "no source builds: the stage has no compiler"
    assert "--constraint constraints.txt" in runs
    assert not BUILD_TOOLS.search(runs) and not PACKAGE_MANAGERS.search(runs)


def test_the_final_stage_serves_the_function_on_8080() -> None:
    final = STAGES[-1]
    (cmd,) = [c for c in final if c.cmd == "CMD"]
    assert cmd.json, "exec form: the server gets the signals, not a shell"
    args = list(cmd.value)
    assert args[0] == "functions-framework"
    assert args[args.index("--target") + 1] == "handle"
    assert args[args.index("--port") + 1] == "8080"
    source = args[args.index("--source") + 1]
    copies = [c for c in final if c.cmd == "COPY" and c.value[-1] == source]
    assert copies and copies[0].value[0] == "functions/${FUNCTION}/main.py"
    (expose,) = [c for c in final if c.cmd == "EXPOSE"]
    assert expose.value == ("8080",)
    assert any(c.cmd == "ARG" and c.value[0] == "FUNCTION" for c in final)


def test_constraints_pin_every_runtime_dependency_within_pyproject() -> None:
    import tomllib

    pins = {}
    for line in (ROOT / "infra" / "image" / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[requirement.name.lower().replace("_", "-")] = spec.version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned for the image"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy pyproject's {requirement.specifier}"
        )
