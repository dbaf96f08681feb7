#!/usr/bin/env bash
# The README's main job: start a demo node, call it, subscribe to it, list it, stop it.
#
#   bash examples/demo-node.sh
#
# Every step is the plain `alknet` CLI, so you can copy any line into your own shell.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p alknet --bin alknet
alknet="${CARGO_TARGET_DIR:-target}/debug/alknet"

ready=$(mktemp)
"$alknet" serve --demo --listen 127.0.0.1:0 --http 127.0.0.1:0 >"$ready" &
node=$!
trap 'kill "$node" 2>/dev/null || true; rm -f "$ready"' EXIT

# The node prints exactly one line once it is listening:
#   alknet listening quic=ADDR fingerprint=SHA256:<hex>
for _ in $(seq 1 200); do
  grep -q '^alknet listening' "$ready" && break
  sleep 0.05
done
line=$(head -n 1 "$ready")
echo "$line"
addr=$(sed -n 's/.* quic=\([^ ]*\).*/\1/p' <<<"$line")
pin=$(sed -n 's/.* fingerprint=\([^ ]*\).*/\1/p' <<<"$line")
http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")

step() {
  echo
  echo "\$ alknet $*"
  "$alknet" "$@"
}

step call "$addr" demo/add '{"a": 20, "b": 22}' --pin "$pin"
step subscribe "$addr" demo/ticks '{"count": 3, "intervalMs": 50}' --pin "$pin"
step call "$addr" demo/echo '{"hello": ["alknet", 1]}' --pin "$pin"
step list "$addr" --pin "$pin"
# A declared domain error: the call.error JSON goes to stderr and the exit status is 1.
step call "$addr" demo/fail '{"reason": "showing errors"}' --pin "$pin" || echo "(exit status $?)"

if command -v curl >/dev/null; then
  echo
  echo "\$ curl -s http://$http/call -H 'Content-Type: application/json' -d '{\"operation\": \"demo/add\", \"input\": {\"a\": 1, \"b\": 2}}'"
  curl -s "http://$http/call" -H 'Content-Type: application/json' -d '{"operation": "demo/add", "input": {"a": 1, "b": 2}}'
  echo
fi

echo
echo "stopping the node (SIGTERM: graceful shutdown)"
kill -TERM "$node"
wait "$node"
trap 'rm -f "$ready"' EXIT
echo "done"
