#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The dead-letter topic on the kind cluster (docs/DEPLOY.md, "Dead letters"):
#   bash infra/kind/dead-letters.sh list      # every dead letter, its error decoded (JSON)
#   bash infra/kind/dead-letters.sh redrive   # post every dead letter to the broker again
# Events land there when a function refused them (a 4xx other than 404/408/409/429) or the
# broker ran out of retries. Needs kubectl, curl and python3.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOPIC=nextup-dead-letters
PORT="${NEXTUP_REDRIVE_PORT:-18081}"
FORWARD_PID=""

cleanup() {
    if [[ -n "$FORWARD_PID" ]]; then
        kill "$FORWARD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Every record of the topic, one a line: headers (name:value, `|` between), a tab, the data.
dead_letters() {
    k -n kafka exec nextup-kafka-dual-role-0 -- bin/kafka-console-consumer.sh \
        --bootstrap-server localhost:9092 --topic "$TOPIC" --from-beginning \
        --timeout-ms 10000 --property print.headers=true --property 'headers.separator=|' \
        2>/dev/null || true
}

main() {
    need kubectl python3
    cluster_exists || die "no kind cluster $CLUSTER"
    case "${1:-}" in
        list)
            dead_letters | python3 "$ROOT/infra/kind/deadletters.py" list
            ;;
        redrive)
            need curl
            k -n knative-eventing port-forward svc/kafka-broker-ingress "$PORT:80" >/dev/null 2>&1 &
            FORWARD_PID=$!
            wait_for "the port-forward" 30 curl -s -o /dev/null "http://127.0.0.1:$PORT/"
            dead_letters | python3 "$ROOT/infra/kind/deadletters.py" redrive \
                --url "http://127.0.0.1:$PORT/$NAMESPACE/nextup"
            ;;
        *)
            die "usage: $0 list|redrive"
            ;;
    esac
}

main "$@"
