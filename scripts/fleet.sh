#!/usr/bin/env bash
# make fleet: a local fleet for demos — a redis-server on a free port and two gateways.
# Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "fleet: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
cargo build -q --workspace --bins
BIN=target/debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo; echo "fleet: stopping"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
REDIS=redis://127.0.0.1:$RPORT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

for i in 1 2; do
    PUB=$((8080 + i - 1)); INT=$((9090 + i - 1))
    PUSHFLEET_LOG=${PUSHFLEET_LOG:-warn} "$BIN/gateway" --redis-url "$REDIS" \
        --listen "127.0.0.1:$PUB" --internal-listen "127.0.0.1:$INT" >/dev/null &
    pids+=($!)
done
sleep 1

cat <<EOT
Pushfleet fleet running (Ctrl-C stops it):
  redis:     $REDIS
  gateway 1: browser http://127.0.0.1:8080/?channel=news   publish http://127.0.0.1:9090/api/publish
  gateway 2: browser http://127.0.0.1:8081/?channel=news   publish http://127.0.0.1:9091/api/publish

Try:
  $BIN/pushctl tail --url ws://127.0.0.1:8081/ws news
  $BIN/pushctl publish --redis $REDIS news '{"hello":"from redis"}'
  $BIN/pushctl publish --url http://127.0.0.1:9090 news '{"hello":"via gateway 1"}'
  curl -X POST http://127.0.0.1:9090/api/publish -H 'content-type: application/json' -d '{"broadcast":true,"data":"everyone"}'
EOT
wait -n "${pids[@]}"
