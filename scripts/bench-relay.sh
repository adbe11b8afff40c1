#!/usr/bin/env bash
# Relay benchmark on loopback: two `hb-cli serve` nodes, A forwarding `/~meta@1.0/info/address`
# to B through the router's `preprocess` hook. Reports
#   * the latency of one request straight to B and through A (one connection, wrk --latency),
#     and the difference: what one relay hop adds;
#   * round trips per second through A and straight to B (CONNECTIONS connections);
#   * the same through `/~relay@1.0/call?relay-path=…` (the relay device without the hook).
#
#   scripts/bench-relay.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Installs wrk from Debian's packages if it is missing. Traffic goes to 127.0.0.1 only; every
# run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
THREADS=2

if ! command -v wrk >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release -q -p hb-cli
BIN=${CARGO_TARGET_DIR:-target}/release/hb-cli
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_node NAME [CONFIG]: starts a node, waits for its URL, sets URL_<NAME>.
start_node() {
  local name=$1 config=${2:-}
  mkdir -p "$WORK/$name"
  local args=(serve --port 0 --bind 127.0.0.1 --data-dir "$WORK/$name")
  [ -n "$config" ] && args+=(--config "$config")
  RUST_LOG=warn "$BIN" "${args[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    if grep -q 'serving http://' "$WORK/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  local url
  url=$(grep -o 'http://[0-9.:]*' "$WORK/$name.out")
  printf -v "URL_$name" '%s' "$url"
}

start_node B
cat >"$WORK/a.json" <<EOF
{
  "on": { "request": { "device": "router@1.0", "path": "preprocess" } },
  "routes": [ { "template": "^/~meta@1.0/info/address", "node": { "prefix": "$URL_B" } } ]
}
EOF
start_node A "$WORK/a.json"
PATH_ADDR=/~meta@1.0/info/address
RELAY_CALL="/~relay@1.0/call?relay-path=%2F~meta%401.0%2Finfo%2Faddress"

# Sanity: the hop really forwards.
direct=$(curl -s "$URL_B$PATH_ADDR")
hopped=$(curl -s "$URL_A$PATH_ADDR")
[ "$direct" = "$hopped" ] || { echo "A did not forward to B ($hopped vs $direct)" >&2; exit 1; }

p50_us() { # wrk --latency output → the 50% latency in microseconds
  awk '/^ +50%/ { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); print v }
                        else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 }
                        else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000000 } }'
}
rps() { awk '/^Requests\/sec/ { print $2 }'; }

echo "== latency, 1 connection, ${DURATION}s each"
lat_b=$(wrk -t1 -c1 -d"${DURATION}s" --latency "$URL_B$PATH_ADDR" | p50_us)
lat_a=$(wrk -t1 -c1 -d"${DURATION}s" --latency "$URL_A$PATH_ADDR" | p50_us)
lat_r=$(wrk -t1 -c1 -d"${DURATION}s" --latency "$URL_A$RELAY_CALL" | p50_us)
printf '  direct to B              p50 %8.0f µs\n' "$lat_b"
printf '  via A (preprocess hook)  p50 %8.0f µs   one hop adds %6.0f µs\n' "$lat_a" "$(echo "$lat_a - $lat_b" | bc -l)"
printf '  via A (relay@1.0/call)   p50 %8.0f µs   one hop adds %6.0f µs\n' "$lat_r" "$(echo "$lat_r - $lat_b" | bc -l)"

echo "== throughput, $CONNS connections, ${DURATION}s each"
tp_b=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$URL_B$PATH_ADDR" | rps)
tp_a=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$URL_A$PATH_ADDR" | rps)
tp_r=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$URL_A$RELAY_CALL" | rps)
printf '  direct to B              %10.0f req/s\n' "$tp_b"
printf '  via A (preprocess hook)  %10.0f relay round trips/s\n' "$tp_a"
printf '  via A (relay@1.0/call)   %10.0f relay round trips/s\n' "$tp_r"
echo "(both nodes and wrk share this machine's $(nproc) cores)"
