#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The OpenFaaS path on the same kind cluster (`make kind-openfaas`, after `make kind-up`):
#   1. OpenFaaS CE from its Helm chart (and, with NEXTUP_CRON_CONNECTOR=1, the cron-connector),
#   2. the function secrets (`faas-cli secret create`),
#   3. `faas-cli build` of stack.yml, the images loaded into the node, `faas-cli deploy`,
#   4. the eventing overlay: the broker's Triggers now deliver to the OpenFaaS gateway.
# The functions then run as OpenFaaS functions in openfaas-fn (no scale to zero: that is
# OpenFaaS Pro), still driven by the Kafka broker, against the same DynamoDB Local and
# Mailpit. `make kind-up` again routes the Triggers back to the Knative Services.
# Needs helm and faas-cli besides docker, kind, kubectl and curl.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GATEWAY_PORT="${NEXTUP_GATEWAY_PORT:-31112}"
FORWARD_PID=""

cleanup() {
    if [[ -n "$FORWARD_PID" ]]; then
        kill "$FORWARD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

install_openfaas() {
    log "OpenFaaS CE (chart $OPENFAAS_CHART_VERSION)"
    k apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: openfaas
  labels: {role: openfaas-system, access: openfaas-system}
---
apiVersion: v1
kind: Namespace
metadata:
  name: openfaas-fn
  labels: {role: openfaas-fn}
EOF
    helm repo add openfaas https://openfaas.github.io/faas-netes/ >/dev/null
    helm repo update openfaas >/dev/null
    # Function images come from `kind load`, not a registry: never pull them.
    helm upgrade --install openfaas openfaas/openfaas --kube-context "$CONTEXT" \
        --namespace openfaas --version "$OPENFAAS_CHART_VERSION" \
        --set functionNamespace=openfaas-fn --set generateBasicAuth=true \
        --set faasnetes.imagePullPolicy=IfNotPresent --wait --timeout 10m
    if [[ "${NEXTUP_CRON_CONNECTOR:-0}" == 1 ]]; then
        log "cron-connector (chart $CRON_CONNECTOR_CHART_VERSION)"
        helm upgrade --install cron-connector openfaas/cron-connector --kube-context "$CONTEXT" \
            --namespace openfaas --version "$CRON_CONNECTOR_CHART_VERSION" --wait --timeout 5m
    fi
}

login() {
    k -n openfaas port-forward svc/gateway "$GATEWAY_PORT:8080" >/dev/null 2>&1 &
    FORWARD_PID=$!
    export OPENFAAS_URL="http://127.0.0.1:$GATEWAY_PORT"
    wait_for "the OpenFaaS gateway" 60 curl -fs "$OPENFAAS_URL/healthz"
    k -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' |
        base64 --decode | faas-cli login --username admin --password-stdin
}

create_secrets() {
    log "function secrets (placeholders that DynamoDB Local and Mailpit accept)"
    local credentials
    credentials="$(mktemp)"
    printf '[default]\naws_access_key_id = nextup-local\naws_secret_access_key = nextup-local\n' >"$credentials"
    faas-cli secret remove nextup-aws-credentials >/dev/null 2>&1 || true
    faas-cli secret create nextup-aws-credentials --from-file "$credentials"
    rm -f "$credentials"
    faas-cli secret remove nextup-smtp-password >/dev/null 2>&1 || true
    faas-cli secret create nextup-smtp-password --from-literal nextup-local
}

deploy_functions() {
    log "faas-cli build and deploy (stack.yml)"
    cd "$ROOT"
    faas-cli template store pull dockerfile
    TAG="$NEXTUP_VERSION" faas-cli build -f stack.yml --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
    local fn
    for fn in "${FUNCTIONS[@]}"; do
        kind load docker-image --name "$CLUSTER" "$(image_of "$fn")"
    done
    TAG="$NEXTUP_VERSION" faas-cli deploy -f stack.yml
    k -n openfaas-fn wait deployment --all --for=condition=Available --timeout=300s
}

route_triggers() {
    log "Triggers now deliver to the OpenFaaS gateway (eventing/overlays/openfaas)"
    k apply -k "$ROOT/eventing/overlays/openfaas"
    k -n "$NAMESPACE" wait trigger --all --for=condition=Ready --timeout=300s
}

main() {
    need docker kind kubectl curl helm faas-cli
    cluster_exists || die "no kind cluster $CLUSTER: run 'make kind-up' first"
    install_openfaas
    login
    create_secrets
    deploy_functions
    route_triggers
    log "OpenFaaS functions deployed; 'make kind-smoke' exercises them through the broker"
}

main "$@"
