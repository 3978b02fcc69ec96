#!/usr/bin/env bash
# Slow headers against one release instance: slowhttptest (Debian's package) opens CONNECTIONS
# connections that send a header line every 10 s and never finish, while a probe asks for `/`
# every 2 s. Prints resident memory over time, how long the slow connections stayed open
# (slowhttptest's own per-second counts), and the share of probes answered, and within 100 ms.
# The backends are blackholed (scripts/blackhole.py accepts and never answers).
#
#   scripts/slowloris.sh                  # 4000 connections, 90 s
#   LENGTH=60 scripts/slowloris.sh
#   RIDESHARE_MAX_CONNECTIONS=1000 scripts/slowloris.sh   # more slow connections than the cap:
#                                                         # newcomers evict the longest waiting
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-4000}
RATE=${RATE:-400}
LENGTH=${LENGTH:-90}
PORT=${APP_PORT:-15080}
APP=127.0.0.1:$PORT
BLACKHOLE_PORT=${BLACKHOLE_PORT:-14399}
out=$(mktemp -d)

if ! command -v slowhttptest >/dev/null; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get install -y slowhttptest >/dev/null
fi
# slowhttptest needs a descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet --bins

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 scripts/blackhole.py "$BLACKHOLE_PORT" &
pids+=($!)
RUST_LOG=warn RIDESHARE_LISTEN_ADDR=$APP RIDESHARE_WORK_SCALE=0.01 \
  PYROSCOPE_SERVER_ADDRESS=http://127.0.0.1:$BLACKHOLE_PORT \
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$BLACKHOLE_PORT \
  "${CARGO_TARGET_DIR:-target}/release/rideshare" >"$out/service.log" 2>&1 &
service=$!
pids+=($service)
until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.2; done
start=$(date +%s.%N)
since() { echo "$(date +%s.%N) - $start" | bc | xargs printf '%.0f'; }

( while kill -0 "$service" 2>/dev/null; do
    echo "$(since) $(awk '/VmRSS/ {print $2}' "/proc/$service/status")"
    sleep 5
  done ) >"$out/rss" &
pids+=($!)
# One probe every 2 s: status and total time; 000 is no answer within 5 s.
( while true; do
    curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "http://$APP/" || true
    sleep 2
  done ) >"$out/probes" &
pids+=($!)

echo "slowloris: $CONNECTIONS connections at $RATE/s, headers every 10 s, for ${LENGTH}s against $APP"
env | grep -E '^RIDESHARE_(HEADER_READ_TIMEOUT|IDLE_TIMEOUT|MAX_CONNECTIONS)=' | sed 's/^/  /' || true
slowhttptest -c "$CONNECTIONS" -H -i 10 -r "$RATE" -l "$LENGTH" -u "http://$APP/" \
  -g -o "$out/slow" >"$out/slowhttptest.log" 2>&1 || true
# slowhttptest stops once the server has closed everything: keep measuring for the full length.
while [ "$(since)" -lt $((LENGTH + 5)) ]; do sleep 1; done
peak_rss=$(awk '/VmHWM/ {print $2}' "/proc/$service/status")
kill "${pids[@]:2}" 2>/dev/null || true

echo
echo "resident memory (VmRSS) of the service:"
awk '{printf "  %4d s  %6.1f MiB\n", $1, $2 / 1024}' "$out/rss"
awk -v kib="$peak_rss" 'BEGIN { printf "  peak (VmHWM) %.1f MiB\n", kib / 1024 }'
echo
echo "slow connections, slowhttptest's counts (every 5 s; connected = held open by the server):"
awk -F, 'NR == 1 { print "  " $0; next } ($1 % 5 == 0) { print "  " $0 }' "$out/slow.csv"
# The k-th connection opened when opened (closed + connected) first reached k and closed when
# closed first reached k: its lifetime, for every k, from the per-second counts (+-1 s).
awk -F, -v lives="$out/lives" 'NR == 1 { next }
  $4 > peak { peak = $4; at = $1 }
  $4 > 0 { last = $1 }
  { for (k = opened + 1; k <= $2 + $4; k++) open_at[k] = $1; if ($2 + $4 > opened) opened = $2 + $4
    for (k = closed + 1; k <= $2; k++) print $1 - open_at[k] >lives; if ($2 > closed) closed = $2 }
  END { printf "  peak %d connected at %d s; last second with any connected: %d s\n", peak, at, last
}' "$out/slow.csv"
touch "$out/lives"
# (The CSV's last row is the second before slowhttptest stops, so the last few to close are not in it.)
sort -n "$out/lives" | awk '{ life[NR] = $1 }
  END { p99 = int(NR * 0.99); if (p99 < 1) p99 = 1
        if (NR) printf "  %d closed by the server (in the CSV) after median %d s, 99th percentile %d s, longest %d s\n",
                       NR, life[int((NR + 1) / 2)], life[p99], life[NR] }'
sed 's/\x1b\[[0-9;]*m//g' "$out/slowhttptest.log" | grep -E "Test ended|Exit status" | sed 's/^/  slowhttptest: /' || true
echo
awk '{ n++; if ($1 == 200) { ok++; if ($2 < 0.1) fast++ }; if ($2 > max) max = $2 }
  END { printf "probes: %d sent, %d answered 200 (%.1f%%), %d within 100 ms (%.1f%%), slowest %.0f ms\n",
        n, ok, 100 * ok / n, fast, 100 * fast / n, max * 1000 }' "$out/probes"
echo "service warnings:"
grep -c . "$out/service.log" >/dev/null && tail -n 5 "$out/service.log" | sed 's/^/  /' || echo "  none"
echo "(raw files in $out)"
