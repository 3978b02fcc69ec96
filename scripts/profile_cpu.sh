#!/usr/bin/env bash
# Does the CPU in pushed profiles add up? One instance, both cores busy with car orders for
# DURATION, profiles pushed to the `receivers` example. For each sample rate it prints the
# process's own CPU (utime + stime from /proc/<pid>/stat, read when the load ends), the CPU the
# pushed profiles hold (their samples summed, in sampling periods, over the rate), their ratio,
# and the sampler's own count of periods expected (its CPU clock while sampling x rate) vs taken
# and of samples (signals) taken, from the `sampler totals` line the service logs at shutdown.
#
#   scripts/profile_cpu.sh                  # 15 s at 100 Hz and at 1000 Hz; needs wrk
#   DURATION=30s RATES="100 250 1000" scripts/profile_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
RATES=${RATES:-"100 1000"}
CONNECTIONS=${CONNECTIONS:-16}
WORK_SCALE=${WORK_SCALE:-0.01}
APP=127.0.0.1:${APP_PORT:-17000}
GRPC=127.0.0.1:${GRPC_PORT:-17317}
HTTP=127.0.0.1:${HTTP_PORT:-17318}
BIN=${CARGO_TARGET_DIR:-target}/release
CLK_TCK=$(getconf CLK_TCK)
command -v wrk >/dev/null || { echo "profile_cpu: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bins --example receivers
out=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

cpu_seconds() { awk -v t="$CLK_TCK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
# The value of `key=N` in the service's `sampler totals` line.
totals_field() { sed -nE "/sampler totals/ s/.*$1[=:]\"?([0-9]+).*/\1/p" "$out/service.log" | tail -n 1; }

run_rate() {
  local rate=$1
  "$BIN/examples/receivers" "$GRPC" "$HTTP" >"$out/receivers.log" &
  local receivers=$!
  pids+=("$receivers")
  sleep 0.5
  RIDESHARE_LISTEN_ADDR=$APP RIDESHARE_WORK_SCALE=$WORK_SCALE RIDESHARE_MUTEX_HOTSPOT=off RUST_LOG=info \
    PYROSCOPE_SERVER_ADDRESS=http://$HTTP PYROSCOPE_SAMPLE_RATE=$rate PYROSCOPE_UPLOAD_INTERVAL=5s \
    OTEL_PROFILES_EXPORTER=pyroscope OTEL_EXPORTER_OTLP_ENDPOINT=http://$GRPC OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    "$BIN/rideshare" >"$out/service.log" 2>&1 &
  local service=$!
  pids+=("$service")
  until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.1; done
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://$APP/car" >"$out/wrk.txt"
  local cpu
  cpu=$(cpu_seconds "$service")
  kill -TERM "$service"; wait "$service" || true
  kill -TERM "$receivers"; wait "$receivers" || true
  local periods
  periods=$(tail -n 1 "$out/receivers.log" | sed -E 's/.*"cpu_samples":([0-9]+).*/\1/')
  awk -v rate="$rate" -v cpu="$cpu" -v p="$periods" -v expected="$(totals_field periods_expected)" \
    -v taken="$(totals_field periods_taken)" -v sig="$(totals_field samples_taken)" \
    -v rps="$(awk '/Requests\/sec/ {print $2}' "$out/wrk.txt")" \
    'BEGIN { printf "%7d %9.2f %9.2f %7.3f %10s %10s %10s %8.0f\n", rate, cpu, p / rate, p / rate / cpu, expected, taken, sig, rps }'
}

echo "profile_cpu: $DURATION of car orders per rate, $CONNECTIONS connections, work scale $WORK_SCALE, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%7s %9s %9s %7s %10s %10s %10s %8s\n" rate_hz cpu_s pushed_s ratio expected taken signals req_s
for rate in $RATES; do
  run_rate "$rate"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); tick: $(sed -nE '/sampler totals/ s/.*kernel_tick_hz[=:]"?([0-9]+).*/\1/p' "$out/service.log" | tail -n 1) Hz"
