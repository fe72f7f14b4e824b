"""The eventing objects `nextup dev` runs, read from the manifests that deploy to Knative.

Only what the local runtime acts on is read; everything else in a manifest (labels,
`bootstrap.servers`, OIDC audiences) belongs to the cluster. The files are the ones
`kustomization.yaml` lists, so an overlay sitting beside them is not picked up by accident.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nextup_dev.filters import Filter, compile_trigger_filter

ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
PING_TYPE = "dev.knative.sources.ping"
DEFAULT_PARTITIONS = 10
_DURATION = TypeAdapter(timedelta)


class ManifestError(ValueError):
    """A manifest `nextup dev` cannot run, with the object at fault named."""


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    namespace: str
    api_version: str = ""


@dataclass(frozen=True)
class Destination:
    """A Knative Destination: a reference to an addressable, or a URI."""

    ref: Ref | None = None
    uri: str | None = None

    def describe(self) -> str:
        if self.ref is not None:
            return f"{self.ref.kind}/{self.ref.name}"
        return self.uri or "-"


@dataclass(frozen=True)
class Delivery:
    """A Trigger's (or its Broker's) `delivery`: how often and how patiently to retry."""

    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: timedelta = timedelta(milliseconds=200)
    timeout: timedelta | None = None
    dead_letter: Destination | None = None


@dataclass(frozen=True)
class Broker:
    namespace: str
    name: str
    partitions: int = DEFAULT_PARTITIONS
    replication: int = 1
    delivery: Delivery | None = None

    @property
    def topic(self) -> str:
        # As the Kafka Broker's data plane names it (knative-extensions/eventing-kafka-broker).
        return f"knative-broker-{self.namespace}-{self.name}"

    @property
    def path(self) -> str:
        return f"/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Trigger:
    namespace: str
    name: str
    broker: str
    subscriber: Destination
    filter: Filter = field(repr=False, compare=False)
    delivery: Delivery = Delivery()
    ordered: bool = False

    @property
    def consumer_group(self) -> str:
        return f"knative-trigger-{self.namespace}-{self.name}"


@dataclass(frozen=True)
class PingSource:
    namespace: str
    name: str
    schedule: str
    timezone: str
    sink: Destination
    content_type: str | None = None
    data: bytes = b""

    @property
    def source(self) -> str:
        return f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.name}"


@dataclass(frozen=True)
class KafkaSink:
    namespace: str
    name: str
    topic: str
    partitions: int = 1
    replication: int = 1
    content_mode: str = "binary"


@dataclass(frozen=True)
class Eventing:
    brokers: tuple[Broker, ...]
    triggers: tuple[Trigger, ...]
    ping_sources: tuple[PingSource, ...]
    kafka_sinks: tuple[KafkaSink, ...]

    def broker(self, namespace: str, name: str) -> Broker:
        for broker in self.brokers:
            if (broker.namespace, broker.name) == (namespace, name):
                return broker
        raise ManifestError(f"no Broker {namespace}/{name} in the manifests")

    def kafka_sink(self, ref: Ref) -> KafkaSink:
        for sink in self.kafka_sinks:
            if (sink.namespace, sink.name) == (ref.namespace, ref.name):
                return sink
        raise ManifestError(f"no KafkaSink {ref.namespace}/{ref.name} in the manifests")

    def services(self) -> tuple[str, ...]:
        """The Knative Services the Triggers deliver to, in manifest order."""
        names: dict[str, None] = {}
        for trigger in self.triggers:
            ref = trigger.subscriber.ref
            if ref is not None and ref.kind == "Service":
                names[ref.name] = None
        return tuple(names)


# Parsing: plain dicts (as YAML gives them) in, typed objects out.


def _where(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _duration(value: Any, what: str) -> timedelta:
    try:
        return _DURATION.validate_python(value)
    except ValidationError:
        raise ManifestError(
            f"{what}: {value!r} is not an ISO 8601 duration (e.g. PT0.5S)"
        ) from None


def _ref(raw: Mapping[str, Any], namespace: str) -> Ref:
    return Ref(
        kind=str(raw.get("kind", "")),
        name=str(raw.get("name", "")),
        namespace=str(raw.get("namespace") or namespace),
        api_version=str(raw.get("apiVersion", "")),
    )


def _destination(raw: Mapping[str, Any] | None, namespace: str, what: str) -> Destination | None:
    if not raw:
        return None
    ref = _ref(raw["ref"], namespace) if raw.get("ref") else None
    uri = raw.get("uri")
    if ref is None and not uri:
        raise ManifestError(f"{what}: a destination needs a ref or a uri")
    if ref is not None and uri:
        raise ManifestError(f"{what}: a ref with a relative uri is not supported by nextup dev")
    return Destination(ref=ref, uri=str(uri) if uri else None)


def _delivery(raw: Mapping[str, Any] | None, namespace: str, what: str) -> Delivery | None:
    if raw is None:
        return None
    policy = raw.get("backoffPolicy", "exponential")
    if policy not in ("linear", "exponential"):
        raise ManifestError(f"{what}: backoffPolicy must be linear or exponential, not {policy!r}")
    retry = int(raw.get("retry", 0))
    if retry < 0:
        raise ManifestError(f"{what}: retry must not be negative")
    return Delivery(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=_duration(raw.get("backoffDelay", "PT0.2S"), f"{what} backoffDelay"),
        timeout=_duration(raw["timeout"], f"{what} timeout") if raw.get("timeout") else None,
        dead_letter=_destination(raw.get("deadLetterSink"), namespace, f"{what} deadLetterSink"),
    )


def _meta(doc: Mapping[str, Any], default_namespace: str) -> tuple[str, str, Mapping[str, Any]]:
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        raise ManifestError(f"{doc.get('kind')} without metadata.name")
    return str(meta.get("namespace") or default_namespace), str(meta["name"]), meta


def parse(docs: Iterable[Mapping[str, Any]], default_namespace: str = "default") -> Eventing:
    """The eventing objects in `docs`; a ConfigMap named by a Broker's `spec.config` gives its
    topic's partitions and replication factor, and a Trigger without a `delivery` of its own
    takes its Broker's."""
    docs = [d for d in docs if d]
    config_maps = {
        _meta(d, default_namespace)[:2]: d.get("data") or {}
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    brokers, sinks, later = [], [], []
    for doc in docs:
        kind, where = doc.get("kind"), _where(doc)
        namespace, name, meta = _meta(doc, default_namespace)
        spec = doc.get("spec") or {}
        if kind == "Broker":
            brokers.append(_broker(spec, namespace, name, meta, config_maps, where))
        elif kind == "KafkaSink":
            if spec.get("contentMode", "binary") != "binary":
                raise ManifestError(f"{where}: nextup dev writes dead letters in binary mode only")
            sinks.append(
                KafkaSink(
                    namespace,
                    name,
                    topic=str(spec["topic"]),
                    partitions=int(spec.get("numPartitions", 1)),
                    replication=int(spec.get("replicationFactor", 1)),
                )
            )
        elif kind in ("Trigger", "PingSource"):
            later.append((kind, spec, namespace, name, meta, where))
    known = Eventing(tuple(brokers), (), (), tuple(sinks))
    triggers, pings = [], []
    for kind, spec, namespace, name, meta, where in later:
        if kind == "Trigger":
            triggers.append(_trigger(known, spec, namespace, name, meta, where))
        else:
            pings.append(_ping_source(known, spec, namespace, name, where))
    return Eventing(tuple(brokers), tuple(triggers), tuple(pings), tuple(sinks))


def _broker(spec, namespace, name, meta, config_maps, where) -> Broker:
    broker_class = (meta.get("annotations") or {}).get(BROKER_CLASS_ANNOTATION, "Kafka")
    if broker_class != "Kafka":
        raise ManifestError(f"{where}: nextup dev runs Kafka brokers only, not {broker_class!r}")
    config_ref = spec.get("config") or {}
    config = config_maps.get((config_ref.get("namespace") or namespace, config_ref.get("name")), {})
    return Broker(
        namespace,
        name,
        partitions=int(config.get("default.topic.partitions", DEFAULT_PARTITIONS)),
        replication=int(config.get("default.topic.replication.factor", 1)),
        delivery=_delivery(spec.get("delivery"), namespace, where),
    )


def _trigger(known: Eventing, spec, namespace, name, meta, where) -> Trigger:
    subscriber = _destination(spec.get("subscriber"), namespace, f"{where} subscriber")
    if subscriber is None:
        raise ManifestError(f"{where}: spec.subscriber is required")
    try:
        predicate = compile_trigger_filter(spec.get("filter"), spec.get("filters"))
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    order = (meta.get("annotations") or {}).get(ORDER_ANNOTATION, "unordered")
    if order not in ("ordered", "unordered"):
        raise ManifestError(f"{where}: {ORDER_ANNOTATION} must be ordered or unordered")
    broker = known.broker(namespace, str(spec.get("broker") or "default"))
    delivery = _delivery(spec.get("delivery"), namespace, where) or broker.delivery or Delivery()
    dead_letter = delivery.dead_letter
    if dead_letter is not None and dead_letter.ref is not None:
        if dead_letter.ref.kind != "KafkaSink":
            raise ManifestError(
                f"{where}: a dead-letter ref must be a KafkaSink (or use a uri), "
                f"not {dead_letter.ref.kind}"
            )
        known.kafka_sink(dead_letter.ref)
    return Trigger(
        namespace,
        name,
        broker=broker.name,
        subscriber=subscriber,
        filter=predicate,
        delivery=delivery,
        ordered=order == "ordered",
    )


def _ping_source(known: Eventing, spec, namespace, name, where) -> PingSource:
    sink = _destination(spec.get("sink"), namespace, f"{where} sink")
    if sink is None:
        raise ManifestError(f"{where}: spec.sink is required")
    if sink.ref is not None:
        if sink.ref.kind != "Broker":
            raise ManifestError(f"{where}: nextup dev sends ticks to a Broker or a uri")
        known.broker(sink.ref.namespace, sink.ref.name)
    if spec.get("dataBase64"):
        data = base64.b64decode(spec["dataBase64"])
    else:
        data = str(spec.get("data", "")).encode()
    return PingSource(
        namespace,
        name,
        schedule=str(spec.get("schedule", "")),
        timezone=str(spec.get("timezone") or "UTC"),
        sink=sink,
        content_type=spec.get("contentType"),
        data=data,
    )


RENDERED = "the declarations in nextup.functions (rendered by nextup_dev.render)"


def _listed(kustomization: str) -> tuple[str, list[str]]:
    """A kustomization's namespace (or "default") and the files its `resources` names."""
    import yaml

    found = yaml.safe_load(kustomization) or {}
    return str(found.get("namespace") or "default"), [str(r) for r in found.get("resources") or []]


def resource_files(directory: Path) -> list[Path]:
    """The manifest files of `directory`: those its kustomization lists, else every YAML."""
    kustomization = directory / "kustomization.yaml"
    if kustomization.exists():
        files = [directory / name for name in _listed(kustomization.read_text())[1]]
        return [path for path in files if path.is_file()]
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_texts(files: Mapping[str, str], namespace: str = "default") -> Eventing:
    """The eventing objects in manifests given as text (name -> YAML), in their order."""
    import yaml

    docs: list[Mapping[str, Any]] = []
    for name, text in files.items():
        try:
            docs.extend(d for d in yaml.safe_load_all(text) if d)
        except yaml.YAMLError as exc:
            raise ManifestError(f"{name}: not valid YAML: {exc}") from None
    return parse(docs, default_namespace=namespace)


def load(directory: Path | None) -> Eventing:
    """The eventing objects in the manifests of `directory`; None: those rendered from the
    function declarations, in memory (the same text `make generate` writes to
    eventing/base), for a `nextup dev` installed without a checkout."""
    if directory is None:
        return load_rendered()
    if not directory.is_dir():
        raise ManifestError(f"no eventing manifests at {directory}")
    namespace = "default"
    kustomization = directory / "kustomization.yaml"
    if kustomization.exists():
        namespace = _listed(kustomization.read_text())[0]
    return load_texts(
        {str(path): path.read_text() for path in resource_files(directory)}, namespace
    )


def load_rendered() -> Eventing:
    from nextup_dev.render import eventing_base

    files = eventing_base()
    namespace, listed = _listed(files["kustomization.yaml"])
    return load_texts({name: files[name] for name in listed}, namespace)
