#!/usr/bin/env bash
# Responsiveness under a burst of long orders: one release instance (RIDESHARE_WORK_SCALE=0.1,
# RUST_LOG=warn, no backends), 64 car orders at search_radius=10 sent at once (the default
# in-flight cap, 400 ms of CPU each) plus 10 more half a second later, while `GET /` is probed
# every 50 ms on a new connection each time. Prints the median and max `/` latency, how many
# of the 10 extra orders got 503 and how fast. Needs python3.
#
#   scripts/responsiveness.sh
#   BURST=32 EXTRA=5 PORT=16100 scripts/responsiveness.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BURST=${BURST:-64}
EXTRA=${EXTRA:-10}
APP=127.0.0.1:${PORT:-16100}
BIN=${CARGO_TARGET_DIR:-target}/release/rideshare

cargo build --release --quiet --bin rideshare
RIDESHARE_LISTEN_ADDR=$APP RIDESHARE_WORK_SCALE=0.1 RUST_LOG=warn "$BIN" >/dev/null 2>&1 &
service=$!
trap 'kill -TERM "$service" 2>/dev/null || true; wait "$service" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request as u; u.urlopen('http://$APP/', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
python3 scripts/responsiveness.py "$APP" "$BURST" "$EXTRA"
