#!/usr/bin/env bash
# Soak: sustained load on one instance for DURATION while its backends are blackholed (accept,
# never answer) or healthy (BACKENDS=healthy: the `receivers` example). Prints resident memory
# over time, requests served, p99 per vehicle, and what telemetry was dropped.
#
#   scripts/soak.sh                       # 10 minutes, backends blackholed
#   DURATION=2m BACKENDS=healthy scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10m}
CONCURRENCY=${CONCURRENCY:-8}
WORK_SCALE=${WORK_SCALE:-0.01}
BACKENDS=${BACKENDS:-blackhole}
EVERY=${EVERY:-10}
APP=127.0.0.1:${APP_PORT:-15000}
GRPC_PORT=${GRPC_PORT:-14317}
HTTP_PORT=${HTTP_PORT:-14318}
out=$(mktemp -d)

cargo build --release --quiet --bins --example receivers

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ "$BACKENDS" = healthy ]; then
  target/release/examples/receivers "127.0.0.1:$GRPC_PORT" "127.0.0.1:$HTTP_PORT" >"$out/receivers.log" &
else
  python3 scripts/blackhole.py "$GRPC_PORT" "$HTTP_PORT" &
fi
pids+=($!)
sleep 1

RIDESHARE_LISTEN_ADDR=$APP RIDESHARE_WORK_SCALE=$WORK_SCALE REGION=eu-north RIDESHARE_MUTEX_HOTSPOT=off \
  PYROSCOPE_SERVER_ADDRESS=http://127.0.0.1:$HTTP_PORT \
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$HTTP_PORT \
  target/release/rideshare >"$out/service.log" 2>&1 &
service=$!
pids+=($service)
until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.2; done

echo "soak: $DURATION, concurrency $CONCURRENCY, work scale $WORK_SCALE, backends $BACKENDS"
echo "elapsed_s rss_kib"
(
  start=$(date +%s)
  while kill -0 "$service" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$service/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss"
    sleep "$EVERY"
  done
) &
sampler=$!
pids+=($sampler)

OTEL_SDK_DISABLED=true target/release/loadgen --duration "$DURATION" --concurrency "$CONCURRENCY" "http://$APP" >"$out/loadgen.out"
kill "$sampler" 2>/dev/null || true
final_rss=$(awk '/VmRSS/ {print $2}' "/proc/$service/status")
peak_rss=$(awk '/VmHWM/ {print $2}' "/proc/$service/status")
kill -TERM "$service"
wait "$service" || true

echo "final_rss_kib $final_rss"
echo "peak_rss_kib $peak_rss"
cat "$out/loadgen.out"
echo "telemetry the service reported dropping:"
grep -Ei "dropped|failed|timed out|error" "$out/service.log" | sed 's/^/  /' | tail -n 12 || true
if [ "$BACKENDS" = healthy ]; then
  # Stopped after the service, so their totals include its last spans and profile.
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  echo "receivers (final totals): $(tail -n 1 "$out/receivers.log")"
fi
