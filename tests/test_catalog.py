"""docs/EVENTS.md is generated from the models, and stays so."""

from __future__ import annotations

from pathlib import Path

from nextup.catalog import render_markdown
from nextup.cli import main
from nextup.events import CATALOG

DOC = Path(__file__).resolve().parents[1] / "docs" / "EVENTS.md"


def test_events_doc_matches_the_models():
    assert DOC.read_text() == render_markdown(), "docs/EVENTS.md is stale: run `make generate`"


def test_every_type_is_documented_with_its_fields():
    text = render_markdown()
    for spec in CATALOG.values():
        assert f"## `{spec.type}`" in text
        for name, info in spec.model.model_fields.items():
            assert f"| `{info.alias or name}` |" in text  # as it is spelled in the JSON


def test_cli_prints_the_catalog(capsys):
    assert main(["events", "docs"]) == 0
    assert capsys.readouterr().out == render_markdown()
