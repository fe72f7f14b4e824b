"""The layering of DEVELOPERS.md, held on the real imports of every module of the core:

    `errors`, `jsontext`, `recurrence` → `targets`, `fields` → `envelope`, `events` → `tasks`,
    `reminders` → `store` and other adapters → `contract` → `handlers` → `runtime` →
    `functions` → `catalog`, `serve`, CLI

A module imports from its own layer or the ones before it, never from one after it
(imports under `if TYPE_CHECKING:` and inside functions count too). The core (`nextup`)
imports nothing of the local runtime (`nextup_dev`): `nextup dev` is found by name.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT

CORE = ROOT / "functions" / "nextup"
# Lowest first; each module of the core is in exactly one of these.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("nextup", "nextup.errors", "nextup.jsontext", "nextup.recurrence"),
    ("nextup.targets", "nextup.fields"),
    ("nextup.envelope", "nextup.events"),
    ("nextup.tasks", "nextup.reminders"),
    (
        "nextup.store",
        "nextup.config",
        "nextup.logs",
        "nextup.auth",
        "nextup.resilience",
        "nextup.dependencies",
        "nextup.notify",
        "nextup.webhooks",
        "nextup.emit",
        "nextup.dapr",
        "nextup.backend",
        "nextup.services",
    ),
    ("nextup.contract",),
    ("nextup.handlers",),
    ("nextup.runtime",),
    ("nextup.functions",),
    ("nextup.catalog", "nextup.serve", "nextup.cli"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest name in LAYERS it is, or is inside of."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to DEVELOPERS.md")
    return found


def imported(module: str, path: Path) -> set[str]:
    """Every module `module` imports, by absolute name (`from nextup import store` is
    nextup.store; a name that is not a module is its package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def above(module: str, path: Path) -> list[str]:
    """What `module` (its source at `path`) imports from a layer above its own."""
    own = layer_of(module)
    return sorted(
        name
        for name in imported(module, path)
        if name.split(".")[0] == "nextup" and layer_of(name) > own
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above_it(module: str) -> None:
    found = above(module, MODULES[module])
    assert found == [], f"{module} (layer {layer_of(module)}) imports from above: {found}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_imports_nothing_of_the_local_runtime(module: str) -> None:
    local = sorted(n for n in imported(module, MODULES[module]) if n.split(".")[0] == "nextup_dev")
    assert local == [], f"{module} imports the local runtime: {local}"


def test_importing_the_whole_core_loads_nothing_of_the_local_runtime() -> None:
    """Every module of the core imported in a fresh interpreter (the CLI with it):
    `nextup_dev` is not loaded, so a function's image needs none of it."""
    names = sorted(MODULES)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nextup_dev'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NEXTUP_FUNCTION": "health"},  # nextup.serve binds one
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_checker_sees_an_import_from_above(tmp_path: Path) -> None:
    """The events module made to name a function, three ways: each is caught."""
    for n, line in enumerate(
        (
            "from nextup.functions import ALL",
            "from nextup import runtime",
            "if TYPE_CHECKING:\n    import nextup.handlers.shared",
        )
    ):
        source = tmp_path / f"events{n}.py"
        source.write_text(f"from typing import TYPE_CHECKING\n{line}\n")
        assert above("nextup.events", source), line
    relative = tmp_path / "shared.py"
    relative.write_text("from ..runtime import bind\nfrom . import shared\n")
    assert above("nextup.handlers.shared", relative) == ["nextup.runtime"]
