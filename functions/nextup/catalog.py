"""Renders the event catalog (`docs/EVENTS.md`) from the models in `nextup.events` and
the function declarations in `nextup.functions` (which functions consume each type).

The document is generated, never edited by hand: a test fails when it and the models
drift apart. Regenerate with ``make generate`` (or ``nextup events docs > docs/EVENTS.md``).
It sits above `nextup.functions` in the layering: the catalog itself (`nextup.events`)
knows no function.
"""

from __future__ import annotations

import json
from typing import Any

from nextup.events import CATALOG, SEED_TYPES, EventType
from nextup.functions import ALL


def consumers(spec: EventType) -> tuple[str, ...]:
    """The functions declared to consume its type (in declaration order), then who reads it
    outside nextup (`audience`)."""
    declared = tuple(name for name, f in ALL.items() if spec.type in f.consumes)
    return declared + spec.audience


def _type_name(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        names = [_type_name(s, defs) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(names) or "null"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    fmt = schema.get("format")
    if kind == "array":
        return f"array of {_type_name(schema.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map of {_type_name(schema['additionalProperties'], defs)}"
    return f"{kind} ({fmt})" if fmt else kind


def _constraints(schema: dict[str, Any]) -> str:
    options = schema.get("anyOf", [schema])
    parts = []
    for option in options:
        for key, label in (
            ("pattern", "pattern"),
            ("maxLength", "max length"),
            ("minimum", "min"),
            ("maximum", "max"),
        ):
            if key in option:
                value = option[key]
                parts.append(f"{label} `{value}`" if key == "pattern" else f"{label} {value}")
    return ", ".join(parts)


def _field_table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    if "enum" in schema:
        choices = " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
        paragraphs = [" ".join(p.split()) for p in schema.get("description", "").split("\n\n")]
        return [f"One of {choices}.", "", *(line for p in paragraphs if p for line in (p, ""))]
    properties = schema.get("properties", {})
    if not properties:
        return ["_Any JSON; nothing in it is read._", ""]
    required = set(schema.get("required", []))
    lines = ["| field | type | required | limits |", "| --- | --- | --- | --- |"]
    for name, prop in properties.items():
        lines.append(
            f"| `{name}` | {_type_name(prop, defs)} | {'yes' if name in required else 'no'} "
            f"| {_constraints(prop)} |"
        )
    return [*lines, ""]


def _section(spec: EventType) -> list[str]:
    schema = spec.model.model_json_schema()
    defs = schema.get("$defs", {})
    lines = [
        f"## `{spec.type}`",
        "",
        spec.summary,
        "",
        f"- producer: {spec.producer}",
        f"- consumers: {', '.join(consumers(spec))}",
        f"- data model: `nextup.events.{spec.model.__name__}`",
        "",
        *_field_table(schema, defs),
    ]
    for name in sorted(defs):
        lines += [f"`{name}`:", "", *_field_table(defs[name], defs)]
    lines += ["Example `data`:", "", "```json", json.dumps(spec.example, indent=2), "```", ""]
    return lines


def render_markdown() -> str:
    lines = [
        "# Event catalog",
        "",
        "Every CloudEvent type nextup consumes or emits, with the model of its `data`.",
        "Generated from `nextup.events` by `nextup events docs`; do not edit by hand.",
        "",
        "All events are CloudEvents 1.0, accepted in binary mode (`ce-*` headers) and",
        "structured mode (`application/cloudevents+json`). Ids match "
        "`[A-Za-z0-9_.:@-]{1,128}`; `data` is at most 256 KiB.",
        "Datetimes are ISO 8601; a datetime without an offset is read in the task's",
        "`timezone`, or UTC when it has none.",
        "",
        "The broker takes any CloudEvent: a type no Trigger routes (one not listed here, or",
        "one only the todo app consumes, like `todo.task.scheduled` posted back to it) is",
        "accepted with 202 and reaches no function. `nextup dev` prints an `unrouted` line",
        "for each such event and counts them in `GET /status` (`events.unrouted`).",
        "",
        "| type | producer | consumers |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| [`{t.type}`](#{t.type.replace('.', '')}) | {t.producer} | {', '.join(consumers(t))} |"
        for t in CATALOG.values()
    ]
    lines += [
        "",
        "## The seed's shape (and Dapr)",
        "",
        "Under any CloudEvent type, including Dapr's `com.dapr.event.sent`, data of the form",
        '`{"event_type": ..., "task_id": ..., "user_id": ..., "payload": {"title", '
        '"recurring_pattern", "recurring_end_date", "due_at"}}`',
        "is accepted and mapped onto the canonical type; `recurring_pattern` becomes",
        "`recurrence.rule` and `recurring_end_date` becomes `recurrence.until`. Integer task",
        "ids are accepted as strings. A Dapr envelope posted as the data of another",
        "CloudEvent is unwrapped once.",
        "",
        "| `event_type` | canonical type |",
        "| --- | --- |",
        *[f"| `{seed}` | `{canonical}` |" for seed, canonical in SEED_TYPES.items()],
        "",
    ]
    for spec in CATALOG.values():
        lines += _section(spec)
    return "\n".join(lines).rstrip() + "\n"
