#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Creates the kind cluster and runs nextup on it with scale-to-zero (`make kind-up`):
#   1. the cluster (infra/kind/cluster.yaml, node image from infra/versions.env)
#   2. Knative Serving with Kourier; emptyDir volumes allowed; dev.local images not resolved
#   3. Knative Eventing with the delivery-timeout feature (the Triggers set delivery.timeout)
#   4. Strimzi and a single-node KRaft Kafka (infra/kind/kafka.yaml)
#   5. the Knative Kafka broker and sink (control and data planes)
#   6. the four function images, built from the Dockerfile and loaded into the node
#   7. infra/kind (functions, eventing/base, settings, DynamoDB Local, Mailpit, table Job)
# Every step is idempotent: run it again after a failure, or to redeploy changed code.
# Needs docker, kind, kubectl and curl. Set NEXTUP_KIND_CLUSTER to use another name.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

create_cluster() {
    if cluster_exists; then
        log "kind cluster $CLUSTER exists"
    else
        log "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
        kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
            --config "$ROOT/infra/kind/cluster.yaml" --wait 180s
    fi
    if ! kind version | grep -q "$KIND_VERSION"; then
        printf 'warning: kind %s is pinned; this is %s\n' "$KIND_VERSION" "$(kind version)" >&2
    fi
}

install_serving() {
    log "Knative Serving $KNATIVE_SERVING_VERSION with Kourier $KNATIVE_KOURIER_VERSION"
    k apply -f "$KNATIVE_SERVING_URL/serving-crds.yaml"
    k wait crd/services.serving.knative.dev --for=condition=Established --timeout=60s
    k apply -f "$KNATIVE_SERVING_URL/serving-core.yaml"
    wait_deployments knative-serving
    k apply -f "$KNATIVE_KOURIER_URL/kourier.yaml"
    wait_deployments kourier-system
    wait_deployments knative-serving
    k -n knative-serving patch configmap/config-network --type merge \
        -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
    # The functions mount an emptyDir at /tmp (their root filesystem is read-only).
    k -n knative-serving patch configmap/config-features --type merge \
        -p '{"data":{"kubernetes.podspec-volumes-emptydir":"enabled"}}'
    # Images loaded with `kind load` are in no registry: do not resolve their tags.
    k -n knative-serving patch configmap/config-deployment --type merge \
        -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local"}}'
}

install_eventing() {
    log "Knative Eventing $KNATIVE_EVENTING_VERSION"
    k apply -f "$KNATIVE_EVENTING_URL/eventing-crds.yaml"
    k wait crd/triggers.eventing.knative.dev --for=condition=Established --timeout=60s
    k apply -f "$KNATIVE_EVENTING_URL/eventing-core.yaml"
    wait_deployments knative-eventing
    k -n knative-eventing patch configmap/config-features --type merge \
        -p '{"data":{"delivery-timeout":"enabled"}}'
}

install_kafka() {
    log "Strimzi $STRIMZI_VERSION and Kafka $KAFKA_VERSION (one KRaft node)"
    k create namespace kafka --dry-run=client -o yaml | k apply -f -
    # The release manifest names the namespace `myproject`: install into `kafka` instead.
    # Server-side apply: Strimzi's CRDs are too large for the last-applied annotation.
    curl -fsSL "$STRIMZI_URL" | sed 's/namespace: .*/namespace: kafka/' |
        k apply --server-side --force-conflicts -f -
    wait_deployments kafka
    k apply -f "$ROOT/infra/kind/kafka.yaml"
    k -n kafka wait kafka/nextup-kafka --for=condition=Ready --timeout=600s
}

install_kafka_broker() {
    log "Knative Kafka broker and sink $KNATIVE_KAFKA_VERSION"
    k apply -f "$KNATIVE_KAFKA_URL/eventing-kafka-controller.yaml"
    k apply -f "$KNATIVE_KAFKA_URL/eventing-kafka-broker.yaml"
    k apply -f "$KNATIVE_KAFKA_URL/eventing-kafka-sink.yaml"
    wait_deployments knative-eventing 600
}

build_images() {
    local fn image
    for fn in "${FUNCTIONS[@]}"; do
        image="$(image_of "$fn")"
        log "building $image"
        docker build --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "FUNCTION=$fn" \
            -t "$image" "$ROOT"
        kind load docker-image --name "$CLUSTER" "$image"
    done
}

deploy() {
    log "deploying nextup (infra/kind)"
    k apply -k "$ROOT/infra/kind"
    k -n "$NAMESPACE" wait deployment/dynamodb-local deployment/mailpit \
        --for=condition=Available --timeout=300s
    k -n "$NAMESPACE" wait job/nextup-store-init --for=condition=Complete --timeout=300s
    k -n "$NAMESPACE" wait kafkasink/nextup-dead-letters --for=condition=Ready --timeout=300s
    k -n "$NAMESPACE" wait broker/nextup --for=condition=Ready --timeout=300s
    k -n "$NAMESPACE" wait ksvc --all --for=condition=Ready --timeout=600s
    k -n "$NAMESPACE" wait trigger --all --for=condition=Ready --timeout=300s
    k -n "$NAMESPACE" get ksvc,broker,trigger,pingsource,sinkbinding
}

main() {
    need docker kind kubectl curl
    create_cluster
    install_serving
    install_eventing
    install_kafka
    install_kafka_broker
    build_images
    deploy
    log "nextup is up: run 'make kind-smoke' to post a task and watch it scale back to zero"
}

main "$@"
