# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Sourced by the scripts in infra/kind/: pinned versions, names, and small helpers.
# Every kubectl call goes to the kind cluster's own context, never to whatever the current
# context of the person running the script happens to be.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../versions.env
source "$ROOT/infra/versions.env"

CLUSTER="${NEXTUP_KIND_CLUSTER:-nextup}"
CONTEXT="kind-$CLUSTER"
NAMESPACE=nextup
# Rendered from nextup.functions by `make generate`.
FUNCTIONS=(complete-task schedule-next send-reminder health)
# The image tag is the project version; Knative does not resolve dev.local/ names in a
# registry, so images loaded with `kind load` are used as they are.
NEXTUP_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
IMAGE_PREFIX="dev.local/nextup-"

KNATIVE_SERVING_URL="https://github.com/knative/serving/releases/download/$KNATIVE_SERVING_VERSION"
KNATIVE_KOURIER_URL="https://github.com/knative-extensions/net-kourier/releases/download/$KNATIVE_KOURIER_VERSION"
KNATIVE_EVENTING_URL="https://github.com/knative/eventing/releases/download/$KNATIVE_EVENTING_VERSION"
KNATIVE_KAFKA_URL="https://github.com/knative-extensions/eventing-kafka-broker/releases/download/$KNATIVE_KAFKA_VERSION"
STRIMZI_URL="https://github.com/strimzi/strimzi-kafka-operator/releases/download/$STRIMZI_VERSION/strimzi-cluster-operator-$STRIMZI_VERSION.yaml"

log() { printf '\n==> %s\n' "$*" >&2; }

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (docs/DEPLOY.md lists what is needed)"
    done
}

k() { kubectl --context "$CONTEXT" "$@"; }

image_of() { printf '%s%s:%s' "$IMAGE_PREFIX" "$1" "$NEXTUP_VERSION"; }

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: run COMMAND every 5 s until it succeeds.
wait_for() {
    local what="$1" timeout="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
        sleep 5
    done
}

# Wait until every Deployment in a namespace is Available.
wait_deployments() {
    k -n "$1" wait deployment --all --for=condition=Available --timeout="${2:-300}s"
}
