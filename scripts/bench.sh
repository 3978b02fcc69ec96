#!/usr/bin/env bash
# Benchmark: what span-linked profiling costs. One instance pinned to core 0, wrk and the stand-in
# backends on core 1, the bike route at 100 us of CPU, one poll since work is sliced every 2 ms of CPU (RIDESHARE_WORK_SCALE=0.0005),
# every request traced. For each setup it prints throughput and p99 against bare, the share of
# expected CPU samples that arrived (samples received / (process CPU seconds x sample rate)), and
# the share of those samples that carry a span_id (CPU outside any request has none).
#
#   scripts/bench.sh                 # 20 s per setup; needs wrk (apt-get install wrk) and taskset
#   DURATION=60s RUNS=3 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-100}
RUNS=${RUNS:-1}
SETUPS=${SETUPS:-"bare traces thread-tags off sampler"}
APP=127.0.0.1:${APP_PORT:-16000}
GRPC=127.0.0.1:${GRPC_PORT:-16317}
HTTP=127.0.0.1:${HTTP_PORT:-16318}
CLK_TCK=$(getconf CLK_TCK)
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bins --example receivers
out=$(mktemp -d)

cpu_seconds() { awk -v t="$CLK_TCK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

run_setup() {
  local setup=$1 env=()
  case $setup in
    bare) env=(PYROSCOPE_ENABLED=false OTEL_SDK_DISABLED=true) ;;
    traces) env=(PYROSCOPE_ENABLED=false) ;;
    thread-tags|off|sampler) env=(RIDESHARE_PROFILE_LABELS=$setup) ;;
  esac
  taskset -c 1 target/release/examples/receivers "$GRPC" "$HTTP" >"$out/receivers.log" &
  local receivers=$!
  sleep 0.5
  env "${env[@]}" RIDESHARE_LISTEN_ADDR=$APP RIDESHARE_WORK_SCALE=0.0005 RUST_LOG=warn \
    PYROSCOPE_SERVER_ADDRESS=http://$HTTP PYROSCOPE_SAMPLE_RATE=$RATE PYROSCOPE_UPLOAD_INTERVAL=5s \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://$GRPC OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    taskset -c 0 target/release/rideshare >"$out/service.log" 2>&1 &
  local service=$!
  until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.1; done
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "http://$APP/bike" >/dev/null # warm-up
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$APP/bike" >"$out/wrk.txt"
  local cpu
  cpu=$(cpu_seconds "$service")
  kill -TERM "$service"; wait "$service" || true
  kill -TERM "$receivers"; wait "$receivers" || true
  local rps p99 samples
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' "$out/wrk.txt")
  local last labelled
  last=$(tail -n 1 "$out/receivers.log")
  samples=$(sed -E 's/.*"cpu_samples":([0-9]+).*/\1/' <<<"$last")
  labelled=$(sed -E 's/.*"span_labelled_samples":([0-9]+).*/\1/' <<<"$last")
  if [ "$setup" = bare ] || [ "$setup" = traces ]; then samples=""; labelled=""; fi
  echo "$setup $rps $p99 $cpu ${samples:--} ${labelled:--}"
}

echo "setup rps p99_ms cpu_s samples labelled" >"$out/results"
for _ in $(seq "$RUNS"); do
  for setup in $SETUPS; do
    run_setup "$setup" | tee -a "$out/results" >&2
  done
done

awk -v rate="$RATE" '
  NR == 1 { next }
  { n[$1]++; rps[$1] += $2; p99[$1] += $3; cpu[$1] += $4; if ($5 != "-") { smp[$1] += $5; lab[$1] += $6 } }
  END {
    b_rps = rps["bare"] / n["bare"]; b_p99 = p99["bare"] / n["bare"]
    printf "%-12s %10s %8s %9s %8s %9s %9s\n", "setup", "req/s", "x bare", "p99 ms", "x bare", "samples", "labelled"
    split("bare traces thread-tags off sampler", names, " ")
    for (i = 1; i <= 5; i++) {
      s = names[i]; if (!n[s]) continue
      r = rps[s] / n[s]; p = p99[s] / n[s]
      share = (s in smp) ? sprintf("%.1f%%", 100 * smp[s] / (cpu[s] * rate)) : "-"
      lshare = (s in smp) ? sprintf("%.1f%%", 100 * lab[s] / smp[s]) : "-"
      printf "%-12s %10.0f %8.2f %9.2f %8.2f %9s %9s\n", s, r, r / b_rps, p, p / b_p99, share, lshare
    }
  }' "$out/results"
