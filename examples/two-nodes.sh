#!/usr/bin/env bash
# Two nodes, one composed of the other (docs/adapters.md): node B serves the demo service;
# node A imports B's operations as `b/…` over QUIC (from_call) and, from B's OpenAPI document,
# as `h/…` over HTTP (from_openapi), and re-exports them over its own QUIC and HTTP.
#
#   bash examples/two-nodes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p alknet --bin alknet
alknet="${CARGO_TARGET_DIR:-target}/debug/alknet"

b_ready=$(mktemp)
a_ready=$(mktemp)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$b_ready" "$a_ready"' EXIT

# Waits for a node's ready line in $1 and prints it.
ready_line() {
  for _ in $(seq 1 200); do
    grep -q '^alknet listening' "$1" && break
    sleep 0.05
  done
  head -n 1 "$1"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

"$alknet" serve --demo --listen 127.0.0.1:0 --http 127.0.0.1:0 >"$b_ready" &
pids+=($!)
b=$(ready_line "$b_ready")
echo "node B: $b"

"$alknet" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --import-call "b=$(field quic "$b")" --import-pin "$(field fingerprint "$b")" \
  --import-openapi "h=http://$(field http "$b")/openapi.json" \
  --import-external >"$a_ready" &
pids+=($!)
a=$(ready_line "$a_ready")
echo "node A: $a"
addr=$(field quic "$a")
pin=$(field fingerprint "$a")
http=$(field http "$a")

step() {
  echo
  echo "\$ alknet $*"
  "$alknet" "$@"
}

# A's own discovery lists B's operations under `b/`.
step list "$addr" --pin "$pin"
step call "$addr" b/demo/add '{"a": 20, "b": 22}' --pin "$pin"
step subscribe "$addr" b/demo/ticks '{"count": 3, "intervalMs": 50}' --pin "$pin"
# The same operations through B's HTTP gateway, imported from its /openapi.json.
step call "$addr" h/demo/add '{"a": 20, "b": 22}' --pin "$pin"
step subscribe "$addr" h/demo/ticks '{"count": 3, "intervalMs": 50}' --pin "$pin"
if command -v curl >/dev/null; then
  echo
  echo "\$ curl -s http://$http/call -H 'Content-Type: application/json' -d '{\"operation\": \"b/demo/add\", \"input\": {\"a\": 1, \"b\": 2}}'"
  curl -s "http://$http/call" -H 'Content-Type: application/json' \
    -d '{"operation": "b/demo/add", "input": {"a": 1, "b": 2}}'
  echo
fi
echo
echo "done"
