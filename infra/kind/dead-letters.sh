#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The dead-letter topic on the kind cluster (docs/DEPLOY.md, "Dead letters"), read with
# kafka-console-consumer and handed to the same `nextup deadletters` commands nextup dev has:
#   bash infra/kind/dead-letters.sh list [--json] [--id ID | --type T | --since T ...]
#   bash infra/kind/dead-letters.sh redrive (--id ID | --type T | --since T | --all) \
#       [--until T] [--status N] [--data JSON] [--dry-run]
# Events land there when a function refused them (a 4xx other than 404/408/409/429) or the
# broker ran out of retries. Needs kubectl, curl and the checkout's .venv (`make dev`).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOPIC=nextup-dead-letters
PORT="${NEXTUP_REDRIVE_PORT:-18081}"
NEXTUP="$ROOT/.venv/bin/nextup"
FORWARD_PID=""

cleanup() {
    if [[ -n "$FORWARD_PID" ]]; then
        kill "$FORWARD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Every record of the topic, one a line: its timestamp, partition and offset, its headers
# (name:value, `|` between) and its data, a tab between each.
dead_letters() {
    k -n kafka exec nextup-kafka-dual-role-0 -- bin/kafka-console-consumer.sh \
        --bootstrap-server localhost:9092 --topic "$TOPIC" --from-beginning \
        --timeout-ms 10000 --property print.timestamp=true --property print.partition=true \
        --property print.offset=true --property print.headers=true \
        --property 'headers.separator=|' 2>/dev/null || true
}

main() {
    need kubectl
    [[ -x "$NEXTUP" ]] || die "no $NEXTUP: run \`make dev\` once (it builds .venv with nextup dev)"
    cluster_exists || die "no kind cluster $CLUSTER"
    local command="${1:-}"
    shift || true
    case "$command" in
        list)
            dead_letters | "$NEXTUP" deadletters list --records - "$@"
            ;;
        redrive)
            need curl
            k -n knative-eventing port-forward svc/kafka-broker-ingress "$PORT:80" >/dev/null 2>&1 &
            FORWARD_PID=$!
            wait_for "the port-forward" 30 curl -s -o /dev/null "http://127.0.0.1:$PORT/"
            dead_letters | "$NEXTUP" deadletters redrive --records - \
                --to "http://127.0.0.1:$PORT/$NAMESPACE/nextup" "$@"
            ;;
        *)
            die "usage: $0 list [--json] [selection] | redrive (--id ID | --type T | --since T | --all) [--dry-run] (nextup deadletters --help)"
            ;;
    esac
}

main "$@"
