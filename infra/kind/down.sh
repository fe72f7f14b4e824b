#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Deletes the kind cluster and everything in it (`make kind-down`). The function images stay
# in the local Docker image store; remove them with `docker image rm dev.local/nextup-...`.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need kind
if cluster_exists; then
    log "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER"
else
    log "no kind cluster $CLUSTER"
fi
