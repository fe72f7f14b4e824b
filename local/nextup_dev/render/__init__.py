"""Every artifact that follows from the function declarations, rendered from them.

The functions are declared once (`nextup.functions.ALL`); from those declarations, the
event catalog and the small table in `table` this renders:

- `eventing/base/triggers.yaml`: a Trigger per consumed type per function, a Dapr Trigger
  per function taking any of the seed's types, all with the one delivery policy;
- `eventing/base/pingsources.yaml`: a PingSource per function with `ticks=True`;
- `eventing/base/broker.yaml`, `dead-letters.yaml`, `kustomization.yaml`: the rest of the
  eventing (the Broker's delivery is the Triggers' one, without `timeout`);
- `eventing/overlays/openfaas/kustomization.yaml`: a patch per function, its Triggers to
  the OpenFaaS gateway;
- `infra/knative/<name>.yaml`, `sinkbinding.yaml`, `kustomization.yaml`: a Knative Service
  per function, a SinkBinding per function with the `sink` dependency;
- `stack.yml`: an OpenFaaS function per function;
- `infra/dapr/dapr.yaml`: each function beside its Dapr sidecar;
- `infra/kind/lib.sh`: its `FUNCTIONS=(...)` line (the rest is written by hand);
- `functions/<name>/main.py`: an entry point per function;
- `docs/EVENTS.md`: the catalog, through `nextup.catalog`.

Templates (`templates/`) are plain text with `{{ name }}` holes, comments and all, so a
rendered file reads like a written one. `python -m nextup_dev.generate` (`make generate`)
writes them; `nextup dev` without a checkout runs the eventing rendered here, in memory.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path

from nextup.contract import Function
from nextup.events import CATALOG, DAPR_ENVELOPE, PING, SEED_TYPES
from nextup_dev.manifests import ORDER_ANNOTATION
from nextup_dev.render.table import (
    DELIVERY,
    DEPLOYMENTS,
    ORDERED,
    SERVICE_TIMEOUT_SECONDS,
    Delivery,
    Deployment,
)

NAMESPACE = "nextup"
BROKER = "nextup"
DAPR_TRIGGER = "dapr"
EVENTING_BASE = Path("eventing", "base")
LIB_SH = "infra/kind/lib.sh"
_HOLE = re.compile(r"\{\{ (\w+) \}\}")
_FUNCTIONS_LINE = re.compile(r"^FUNCTIONS=\(.*\)$", re.M)


class RenderError(ValueError):
    """A declaration the manifests cannot be rendered from, with the function named."""


@cache
def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text()


def fill(template: str, /, **values: object) -> str:
    """`template` with every `{{ hole }}` filled; a hole without a value is an error."""

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise KeyError(f"template {template}: no value for {match[1]}")
        return str(values[match[1]])

    return _HOLE.sub(value, _template(template))


def _comment(lines: tuple[str, ...], indent: str = "") -> str:
    return "".join(f"{indent}# {line}\n" if line else f"{indent}#\n" for line in lines)


def _documents(parts: list[str]) -> str:
    return "---\n".join(parts)


def functions() -> dict[str, Function]:
    """The declarations (imported when first rendered: the handlers stay unimported)."""
    from nextup.functions import ALL

    return ALL


def deployment(function: Function) -> Deployment:
    found = DEPLOYMENTS.get(function.name, Deployment())
    if function.ticks and found.tick is None:
        raise RenderError(
            f"{function.name} is declared with ticks=True: give it a Tick (its PingSource) "
            "in nextup_dev/render/table.py"
        )
    return found


def check(declared: Mapping[str, Function]) -> None:
    """What the manifests rely on: every consumed and emitted type is in the catalog."""
    for function in declared.values():
        unknown = sorted((set(function.consumes) | function.emits) - set(CATALOG))
        if unknown:
            raise RenderError(
                f"{function.name}: {unknown} not in the event catalog (nextup.events.CATALOG)"
            )


# The eventing


def delivery_block(delivery: Delivery = DELIVERY, *, timeout: bool = True) -> str:
    lines = [
        "  delivery:",
        f"    retry: {delivery.retry}",
        f"    backoffPolicy: {delivery.backoff_policy}",
        f"    backoffDelay: {delivery.backoff_delay}",
    ]
    if timeout:
        lines.append(f"    timeout: PT{delivery.timeout_seconds}S")
    lines += [
        "    deadLetterSink:",
        "      ref:",
        "        apiVersion: eventing.knative.dev/v1alpha1",
        "        kind: KafkaSink",
        f"        name: {delivery.dead_letter_sink}",
        f"        namespace: {NAMESPACE}",
    ]
    return "\n".join(lines)


def ping_source_path(name: str) -> str:
    return f"/apis/v1/namespaces/{NAMESPACE}/pingsources/{name}"


def trigger_name(function: Function, event_type: str) -> str:
    """`<function>-<type without "todo.", dots as dashes>`, the function's name not said
    twice (`health-probe`); a tick's Trigger is named by its `Tick`."""
    if event_type == PING:
        tick = deployment(function).tick
        assert tick is not None
        return f"{function.name}-{tick.trigger}"
    slug = event_type.removeprefix("todo.").replace(".", "-")
    if slug.startswith(f"{function.name}-"):
        return slug
    return f"{function.name}-{slug}"


def _trigger(function: Function, name: str, filter_: str, *, ordered: bool = False) -> str:
    annotations = f"  annotations:\n    {ORDER_ANNOTATION}: ordered\n" if ordered else ""
    return fill(
        "trigger.yaml",
        name=name,
        namespace=NAMESPACE,
        broker=BROKER,
        function=function.name,
        annotations=annotations,
        filter=filter_,
        delivery=delivery_block(),
    )


def _type_filter(event_type: str) -> str:
    return f"  filter:\n    attributes:\n      type: {event_type}\n"


def _tick_filter(source: str) -> str:
    return (
        f"  filters:\n  - exact:\n      type: {PING}\n"
        f"  - exact:\n      source: {ping_source_path(source)}\n"
    )


def triggers_of(function: Function) -> list[str]:
    """Its Triggers: one per consumed type, in declared order; then, if it takes any of the
    seed's types, one for Dapr's envelope."""
    out = []
    for event_type in function.consumes:
        name = trigger_name(function, event_type)
        if event_type == PING:
            tick = deployment(function).tick
            assert tick is not None
            out.append(_trigger(function, name, _tick_filter(tick.source)))
        else:
            ordered = event_type in ORDERED
            out.append(_trigger(function, name, _type_filter(event_type), ordered=ordered))
    if set(function.consumes) & set(SEED_TYPES.values()):
        name = f"{function.name}-{DAPR_TRIGGER}"
        out.append(_trigger(function, name, _type_filter(DAPR_ENVELOPE)))
    return out


def triggers(declared: Mapping[str, Function]) -> str:
    parts = [t for f in declared.values() for t in triggers_of(f)]
    return _template("triggers-header.yaml") + _documents(parts)


def ping_sources(declared: Mapping[str, Function]) -> str:
    ticks = [deployment(f).tick for f in declared.values() if f.ticks]
    said = "".join(f"# - {t.says} ({t.source})\n" for t in ticks if t)
    parts = [
        fill("pingsource.yaml", name=t.source, schedule=t.schedule, data=t.data) for t in ticks if t
    ]
    return fill("pingsources-header.yaml", ticks=said) + _documents(parts)


def eventing_base(declared: Mapping[str, Function] | None = None) -> dict[str, str]:
    """`eventing/base`: file name -> text, as `nextup dev` and the cluster read them."""
    declared = functions() if declared is None else declared
    check(declared)
    return {
        "broker.yaml": fill("broker.yaml", delivery=delivery_block(timeout=False)),
        "dead-letters.yaml": _template("dead-letters.yaml"),
        "kustomization.yaml": _template("eventing-kustomization.yaml"),
        "triggers.yaml": triggers(declared),
        "pingsources.yaml": ping_sources(declared),
    }


def openfaas_overlay(declared: Mapping[str, Function]) -> str:
    patches = "".join(fill("openfaas-patch.yaml", name=name) for name in declared)
    return fill("openfaas-kustomization.yaml", patches=patches.rstrip("\n"))


# The functions' deployments


def needs_smtp(function: Function) -> bool:
    """It mails, or it reports every configured dependency (the SMTP server's too)."""
    return "smtp" in function.dependencies or function.report


def emits_to_sink(function: Function) -> bool:
    return "sink" in function.dependencies


def _summary(function: Function) -> tuple[str, ...]:
    summary = deployment(function).summary
    if summary:
        return summary
    emits = ", ".join(sorted(function.emits)) or "nothing"
    return (f"{function.name}: {', '.join(function.consumes)} -> emits {emits}.",)


def knative_service(function: Function, version: str) -> str:
    plan = deployment(function)
    return fill(
        "knative-service.yaml",
        summary=_comment(_summary(function)),
        name=function.name,
        max_scale=plan.max_scale,
        delivery_timeout=DELIVERY.timeout_seconds,
        timeout_seconds=SERVICE_TIMEOUT_SECONDS,
        version=version,
        smtp_env=_template("knative-smtp-env.yaml") if needs_smtp(function) else "",
    )


def sink_bindings(declared: Mapping[str, Function]) -> str | None:
    names = [f.name for f in declared.values() if emits_to_sink(f)]
    if not names:
        return None
    header = fill("sinkbinding-header.yaml", names=", ".join(names))
    return header + _documents([fill("sinkbinding.yaml", name=name) for name in names])


def knative_kustomization(declared: Mapping[str, Function]) -> str:
    files = ["namespace.yaml", *(f"{name}.yaml" for name in declared)]
    if sink_bindings(declared) is not None:
        files.append("sinkbinding.yaml")
    return fill("knative-kustomization.yaml", resources="\n".join(f"  - {f}" for f in files))


def stack_function(function: Function, version: str) -> str:
    plan = deployment(function)
    sink = (
        "      NEXTUP_SINK: ${NEXTUP_SINK:-http://kafka-broker-ingress.knative-eventing.svc"
        f".cluster.local/{NAMESPACE}/{BROKER}}}\n"
    )
    cron = ""
    if plan.tick is not None:
        cron = f'      topic: cron-function\n      schedule: "{plan.tick.schedule}"\n'
    return fill(
        "stack-function.yml",
        note=_comment(plan.openfaas_note, "  "),
        name=function.name,
        version=version,
        sink_env=sink if emits_to_sink(function) else "",
        smtp_secret="      - nextup-smtp-password\n" if needs_smtp(function) else "",
        max_scale=plan.max_scale,
        target=plan.openfaas_target,
        cron=cron,
        cpu=plan.openfaas_cpu,
        memory=plan.openfaas_memory,
    )


def stack(declared: Mapping[str, Function], version: str) -> str:
    entries = [stack_function(f, version) for f in declared.values()]
    return _template("stack-header.yml") + "\n".join(entries)


def dapr_run(declared: Mapping[str, Function]) -> str:
    """`dapr run -f`: each function beside its sidecar, on ports counted from 8081 and 3501."""
    apps = "".join(
        fill("dapr-app.yaml", name=name, port=8081 + n, dapr_port=3501 + n)
        for n, name in enumerate(declared)
    )
    return fill("dapr-run.yaml", apps=apps)


def constant_of(function: Function) -> str:
    """The name `nextup.functions` binds the declaration to (`COMPLETE_TASK`)."""
    import nextup.functions as module

    constant = function.name.upper().replace("-", "_")
    if getattr(module, constant, None) is not function:
        raise RenderError(
            f"nextup.functions.{constant} must be the declaration of {function.name} "
            "(its entry point imports it by that name)"
        )
    return constant


def entry_point(function: Function) -> str:
    return fill("main.py.txt", name=function.name, constant=constant_of(function))


def lib_sh(current: str, declared: Mapping[str, Function]) -> str:
    """`infra/kind/lib.sh` with its `FUNCTIONS=(...)` line rendered; the rest is as written."""
    line = f"FUNCTIONS=({' '.join(declared)})"
    if not _FUNCTIONS_LINE.search(current):
        raise RenderError(f"{LIB_SH} has no FUNCTIONS=(...) line to render")
    return _FUNCTIONS_LINE.sub(line, current, count=1)


def project_version(root: Path) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def render(root: Path) -> dict[str, str]:
    """Every generated file of the checkout at `root`: path relative to it -> text."""
    from nextup.catalog import render_markdown

    declared = functions()
    check(declared)
    version = project_version(root)
    out = {f"{EVENTING_BASE}/{name}": text for name, text in eventing_base(declared).items()}
    out["eventing/overlays/openfaas/kustomization.yaml"] = openfaas_overlay(declared)
    for function in declared.values():
        out[f"infra/knative/{function.name}.yaml"] = knative_service(function, version)
        out[f"functions/{function.name}/main.py"] = entry_point(function)
    bindings = sink_bindings(declared)
    if bindings is not None:
        out["infra/knative/sinkbinding.yaml"] = bindings
    out["infra/knative/kustomization.yaml"] = knative_kustomization(declared)
    out["stack.yml"] = stack(declared, version)
    out["infra/dapr/dapr.yaml"] = dapr_run(declared)
    out[LIB_SH] = lib_sh((root / LIB_SH).read_text(), declared)
    out["docs/EVENTS.md"] = render_markdown()
    return out


def strays(root: Path, rendered: Mapping[str, str]) -> list[str]:
    """Files of a function no longer declared: an entry point or a Knative Service that
    `render` would not write (delete them)."""
    found = list(root.glob("functions/*/main.py"))
    found += [p for p in root.glob("infra/knative/*.yaml") if p.name != "namespace.yaml"]
    return sorted(
        str(p.relative_to(root)) for p in found if str(p.relative_to(root)) not in rendered
    )
