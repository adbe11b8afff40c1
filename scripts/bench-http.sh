#!/usr/bin/env bash
# Load benchmark of `hb-cli serve` on loopback with wrk: requests/s, latency percentiles,
# resident memory, and the time from start to the first served request.
#
#   scripts/bench-http.sh [DURATION_SECONDS] [CONNECTIONS]
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
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

start_node() {
  RUST_LOG=warn "$BIN" serve --port "$PORT" --bind 127.0.0.1 --data-dir "$DATA" >/dev/null 2>&1 &
  PID=$!
}

# First start creates the wallet and the store; the second start is the one measured.
start_node
until curl -sf "http://127.0.0.1:$PORT/~meta@1.0/info/address" >/dev/null; do sleep 0.01; done
kill -INT $PID; wait $PID || true
T0=$(date +%s%N)
start_node
until curl -sf "http://127.0.0.1:$PORT/~meta@1.0/info/address" >/dev/null; do sleep 0.001; done
T1=$(date +%s%N)
echo "start to first served request (existing data directory): $(( (T1 - T0) / 1000000 )) ms"

for path in "/~message@1.0&a=1&b+integer=2/b" "/~meta@1.0/info"; do
  echo "== GET $path ($DURATION s, $CONNS connections, $THREADS threads)"
  wrk -t$THREADS -c$CONNS -d${DURATION}s --latency "http://127.0.0.1:$PORT$path" | grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|requests in"
done
echo "resident memory: $(grep VmRSS /proc/$PID/status | awk '{print $2, $3}')"
