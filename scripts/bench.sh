#!/usr/bin/env bash
# Benchmark: what span-linked profiling costs. One instance pinned to core 0, wrk and the stand-in
# backends on core 1, the bike route at 100 us of CPU in 4 polls (RIDESHARE_WORK_SCALE=0.0005),
# every request traced. Setups run in alternating rounds (bare, off, sampler, thread-tags, then
# again), so a slow moment of the machine spreads over all of them. For each setup it prints:
#   req/s and p99 (and each against bare);
#   samples: CPU samples that arrived, as a share of the expected (process CPU seconds x rate),
#     and the share of those that carry a span_id (CPU outside any request has none);
#   spans created (the service's span queue totals, logged at shutdown) and spans exported (what
#     the stand-in OTLP receiver got);
#   CPU per request: process CPU seconds (/proc/<pid>/stat) over the measured run / requests.
# Then a second table: each setup's latency at p50, p75, p90, p95, p99 and p99.9 (mean over the
# rounds, from scripts/latency_percentiles.lua), to see where a setup departs from bare.
# Last, setups compared round by round, with the standard error and the median of the
# differences: each against bare, sampler against off (what labels cost), and a setup against
# its @baseline.
#
#   scripts/bench.sh                                 # 3 rounds of 5 s; needs wrk and taskset
#   RUNS=5 DURATION=20s CONNECTIONS=64 scripts/bench.sh
#   SETUPS="bare traces off sampler" scripts/bench.sh  # traces = traces without profiles
#   SETUPS="bare unsampled unexported traces" scripts/bench.sh
#                                                    # where traces' cost goes: spans made but
#                                                    # not sampled; recorded and queued but not
#                                                    # sent; sent
#   PROTOCOL=grpc scripts/bench.sh                   # spans over OTLP/gRPC instead of the
#                                                    # service's default, http/protobuf
#   BASELINE=/tmp/old/rideshare SETUPS="bare sampler sampler@baseline" scripts/bench.sh
#                                                    # a setup@baseline runs that binary (e.g.
#                                                    # another commit's) in the same rounds
#   ORDER=abba RUNS=8 BASELINE=... SETUPS="sampler sampler@baseline" scripts/bench.sh
#                                                    # even rounds run the setups backwards, so
#                                                    # no setup always runs in the same place
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setups.sh
. scripts/setups.sh

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-8}
RATE=${RATE:-100}
RUNS=${RUNS:-3}
WORK_SCALE=${WORK_SCALE:-0.0005}
PROTOCOL=${PROTOCOL:-http/protobuf}
SETUPS=${SETUPS:-"bare off sampler thread-tags"}
ORDER=${ORDER:-fixed}
APP=127.0.0.1:${APP_PORT:-16000}
GRPC=127.0.0.1:${GRPC_PORT:-16317}
HTTP=127.0.0.1:${HTTP_PORT:-16318}
TARGET=${CARGO_TARGET_DIR:-target}
CLK_TCK=$(getconf CLK_TCK)
# Spans go to the stand-in receiver of the chosen protocol.
case $PROTOCOL in
  grpc) OTLP=http://$GRPC ;;
  http/protobuf) OTLP=http://$HTTP ;;
  *) echo "bench: PROTOCOL is grpc or http/protobuf, not $PROTOCOL" >&2; exit 1 ;;
esac
case $ORDER in
  fixed|abba) ;;
  *) echo "bench: ORDER is fixed or abba, not $ORDER" >&2; exit 1 ;;
esac
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bins --example receivers
out=$(mktemp -d)

cpu_seconds() { awk -v t="$CLK_TCK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# Runs one setup once; prints "setup rps p99_ms cpu_s requests run_cpu_s samples labelled
# created exported" ("-" where a setup has no such figure).
run_setup() {
  local setup=$1 env bin=$TARGET/release/rideshare kind=${1%@baseline}
  [ "$kind" != "$setup" ] && bin=$BASELINE
  read -r -a env <<<"$(setup_env "$kind") $(service_env)"
  taskset -c 1 "$TARGET/release/examples/receivers" "$GRPC" "$HTTP" >"$out/receivers.log" &
  local receivers=$!
  sleep 0.5
  env "${env[@]}" taskset -c 0 "$bin" >"$out/service.log" 2>&1 &
  local service=$!
  until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.1; done
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s "http://$APP/bike" >/dev/null # warm-up
  local cpu0 cpu1
  cpu0=$(cpu_seconds "$service")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s scripts/latency_percentiles.lua \
    "http://$APP/bike" >"$out/wrk.txt"
  cpu1=$(cpu_seconds "$service")
  kill -TERM "$service"; wait "$service" || true
  kill -TERM "$receivers"; wait "$receivers" || true
  local rps p99 requests samples labelled created exported last percentiles
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk.txt")
  requests=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
  # p50 p75 p90 p95 p99 p99.9 in us (scripts/latency_percentiles.lua): the second table, and p99.
  percentiles=$(sed -n 's/^percentiles_us //p' "$out/wrk.txt")
  p99=$(awk '{print $5 / 1000}' <<<"$percentiles")
  last=$(tail -n 1 "$out/receivers.log")
  samples=$(sed -nE 's/.*"cpu_samples":([0-9]+).*/\1/p' <<<"$last")
  labelled=$(sed -nE 's/.*"span_labelled_samples":([0-9]+).*/\1/p' <<<"$last")
  exported=$(sed -nE 's/.*"spans":([0-9]+).*/\1/p' <<<"$last")
  created=$(sed -nE 's/.*span queue totals.*spans_created=([0-9]+).*/\1/p' "$out/service.log" | tail -n 1)
  echo "$setup $percentiles" >>"$out/percentiles"
  # A setup that turns profiles off has no samples to count.
  [[ " ${env[*]} " == *" PYROSCOPE_ENABLED=false "* ]] && { samples=""; labelled=""; }
  [ "$kind" = bare ] && { created=""; exported=""; }
  echo "$setup $rps $p99 $cpu1 $requests $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}') ${samples:--} ${labelled:--} ${created:--} ${exported:--}"
}

for setup in $SETUPS; do # every setup known, and a baseline binary where one is asked for
  setup_env "${setup%@baseline}" >/dev/null || exit 1
  if [ "${setup%@baseline}" != "$setup" ] && [ ! -x "${BASELINE:-}" ]; then
    echo "bench: $setup needs BASELINE=path to another rideshare binary" >&2; exit 1
  fi
done
echo "setup rps p99_ms cpu_s requests run_cpu_s samples labelled created exported round" >"$out/results"
for round in $(seq "$RUNS"); do
  order=$SETUPS
  # abba: even rounds run the setups backwards, so no setup always follows the same one.
  if [ "$ORDER" = abba ] && [ $((round % 2)) -eq 0 ]; then
    order=$(tr ' ' '\n' <<<"$SETUPS" | tac | tr '\n' ' ')
  fi
  for setup in $order; do
    line=$(run_setup "$setup")
    echo "$line $round" >>"$out/results"
    echo "round $round: $line" >&2
  done
done

awk -v rate="$RATE" -v setups="$SETUPS" '
  NR == 1 { next }
  {
    s = $1; n[s]++; rps[s] += $2; p99[s] += $3; cpu[s] += $4; req[s] += $5; rcpu[s] += $6
    if ($7 != "-") { smp[s] += $7; lab[s] += $8 }
    if ($9 != "-") { made[s] += $9; sent[s] += $10 }
  }
  END {
    b_rps = n["bare"] ? rps["bare"] / n["bare"] : 0; b_p99 = n["bare"] ? p99["bare"] / n["bare"] : 0
    printf "%-20s %8s %7s %8s %7s %9s %9s %10s %10s %11s\n", "setup", "req/s", "x bare", "p99 ms", "x bare", "samples", "labelled", "spans made", "exported", "CPU/req us"
    k = split(setups, names, " ")
    for (i = 1; i <= k; i++) {
      s = names[i]; if (!n[s]) continue
      r = rps[s] / n[s]; p = p99[s] / n[s]
      xr = b_rps ? sprintf("%.2f", r / b_rps) : "-"; xp = b_p99 ? sprintf("%.2f", p / b_p99) : "-"
      share = (s in smp) ? sprintf("%.1f%%", 100 * smp[s] / (cpu[s] * rate)) : "-"
      lshare = (s in smp && smp[s]) ? sprintf("%.1f%%", 100 * lab[s] / smp[s]) : "-"
      mk = (s in made) ? made[s] : "-"; ex = (s in made) ? sent[s] : "-"
      printf "%-20s %8.0f %7s %8.2f %7s %9s %9s %10s %10s %11.1f\n", s, r, xr, p, xp, share, lshare, mk, ex, 1e6 * rcpu[s] / req[s]
    }
  }' "$out/results"

echo
awk -v setups="$SETUPS" '
  { n[$1]++; for (i = 2; i <= 7; i++) v[$1, i] += $i }
  END {
    printf "%-20s %8s %8s %8s %8s %8s %8s  (latency, us)\n", "setup", "p50", "p75", "p90", "p95", "p99", "p99.9"
    k = split(setups, names, " ")
    for (j = 1; j <= k; j++) {
      s = names[j]; if (!n[s]) continue
      printf "%-20s", s
      for (i = 2; i <= 7; i++) printf " %8.0f", v[s, i] / n[s]
      printf "\n"
    }
  }' "$out/percentiles"

# Pairs of setups compared round by round (each round's mean of either): the machine's slow and
# fast moments fall on both sides of a pair, so the differences are what tell setups apart, with
# their standard error. Each setup against bare (what telemetry costs), sampler against off (what
# labels cost), and a setup against its @baseline (what a change costs).
awk -v setups="$SETUPS" '
  NR == 1 { next }
  {
    s = $1; r = $11; seen[s] = 1; rounds[r] = 1
    cnt[s, r]++; cpu[s, r] += 1e6 * $6 / $5; p99[s, r] += $3
  }
  # The median of v[1..n] (sorted in place): one round on a stalled machine moves the mean of
  # the differences, not their median.
  function median(v, n,    i, j, x) {
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j > 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function compare(s, b,    r, n, sum, ss, psum, pss, up, base, d, dp, m, sd, pm, psd, ds) {
    if (!(s in seen) || !(b in seen)) return
    n = 0; sum = 0; ss = 0; psum = 0; pss = 0; up = 0; base = 0
    for (r in rounds) {
      if (!cnt[s, r] || !cnt[b, r]) continue
      d = cpu[s, r] / cnt[s, r] - cpu[b, r] / cnt[b, r]
      dp = p99[s, r] / cnt[s, r] - p99[b, r] / cnt[b, r]
      n++; ds[n] = d; sum += d; ss += d * d; psum += dp; pss += dp * dp; up += (dp > 0); base += cpu[b, r] / cnt[b, r]
    }
    if (n < 2) return
    m = sum / n; sd = sqrt((ss - n * m * m) / (n - 1))
    pm = psum / n; psd = sqrt((pss - n * pm * pm) / (n - 1))
    printf "%s minus %s, paired by round (%d): CPU/req %+.1f us = %+.1f%% (sd %.1f, standard error %.1f; median %+.1f us); p99 %+.2f ms (standard error %.2f), higher in %d of %d rounds\n", \
      s, b, n, m, 100 * m / (base / n), sd, sd / sqrt(n), median(ds, n), pm, psd / sqrt(n), up, n
  }
  END {
    print ""
    k = split(setups, names, " ")
    for (i = 1; i <= k; i++) {
      s = names[i]
      if (s ~ /@baseline$/) continue
      if (s != "bare") compare(s, "bare")
      if (s == "sampler") compare(s, "off")
      compare(s, s "@baseline")
    }
  }' "$out/results"
