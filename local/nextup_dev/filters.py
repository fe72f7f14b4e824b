"""The Trigger filter dialect, compiled once into a predicate over an event's attributes.

- `filter.attributes`: every listed attribute equals its value; an empty value matches
  any value, but the attribute must be there (Knative's `TriggerAnyFilter`).
- `filters` (Subscriptions API): a list that must all hold, each expression exactly one of
  `exact`, `prefix`, `suffix` (every attribute in the map; names and values non-empty),
  `all`, `any` (non-empty lists), `not`. When `filters` is given, `filter` is ignored,
  as Knative does. `cesql` is refused: an expression we cannot evaluate must not
  silently match everything or nothing.

Attributes are strings, as they travel in `ce_` headers; `data` cannot be filtered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Attributes = Mapping[str, str]
Filter = Callable[[Attributes], bool]

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


def match_all(_: Attributes) -> bool:
    return True


def _pairs(dialect: str, raw: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"filters: {dialect} needs a map of attribute names to values")
    pairs = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name or not isinstance(value, str) or not value:
            raise ValueError(f"filters: {dialect} names and values must be non-empty strings")
        pairs.append((name.lower(), value))
    return pairs


def _string_test(dialect: str) -> Callable[[str, str], bool]:
    if dialect == "exact":
        return lambda actual, wanted: actual == wanted
    if dialect == "prefix":
        return str.startswith
    return str.endswith


def compile_expression(expression: Any) -> Filter:
    """One Subscriptions API filter expression as a predicate."""
    if not isinstance(expression, Mapping):
        raise ValueError(f"filters: an expression must be a map, not {type(expression).__name__}")
    present = [key for key in expression if expression[key] is not None]
    if len(present) != 1 or present[0] not in DIALECTS:
        raise ValueError(
            f"filters: each expression needs exactly one of {', '.join(DIALECTS)}; got {present}"
        )
    dialect = present[0]
    raw = expression[dialect]
    if dialect == "cesql":
        raise ValueError(
            f"filters: cesql ({str(raw)[:80]!r}) is not supported by nextup dev; "
            "use exact, prefix, suffix, all, any or not"
        )
    if dialect in ("exact", "prefix", "suffix"):
        pairs, test = _pairs(dialect, raw), _string_test(dialect)

        def strings(attributes: Attributes) -> bool:
            for name, wanted in pairs:
                actual = attributes.get(name)
                if actual is None or not test(actual, wanted):
                    return False
            return True

        return strings
    if dialect == "not":
        inner = compile_expression(raw)
        return lambda attributes: not inner(attributes)
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ValueError(f"filters: {dialect} needs a non-empty list of expressions")
    parts = [compile_expression(item) for item in raw]
    if dialect == "all":
        return lambda attributes: all(part(attributes) for part in parts)
    return lambda attributes: any(part(attributes) for part in parts)


def compile_attributes(attributes: Mapping[str, Any]) -> Filter:
    """`filter.attributes`: exact match, where an empty value stands for any value."""
    pairs = []
    for name, value in attributes.items():
        if not isinstance(value, str):
            raise ValueError(f"filter.attributes.{name}: only string values are supported")
        pairs.append((str(name).lower(), value))

    def exact(event: Attributes) -> bool:
        for name, wanted in pairs:
            actual = event.get(name)
            if actual is None or (wanted != "" and actual != wanted):
                return False
        return True

    return exact


def compile_trigger_filter(
    filter_: Mapping[str, Any] | None, filters: Sequence[Any] | None
) -> Filter:
    """A Trigger's `spec.filter` and `spec.filters` as one predicate."""
    if filters:
        parts = [compile_expression(expression) for expression in filters]
        return lambda attributes: all(part(attributes) for part in parts)
    attributes = (filter_ or {}).get("attributes") or {}
    if not attributes:
        return match_all
    return compile_attributes(attributes)
