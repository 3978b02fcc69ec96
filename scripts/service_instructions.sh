#!/usr/bin/env bash
# Instructions per request of the whole service, all its threads, under callgrind: the same
# load as scripts/bench.sh (the bike route at 100 us of work, wrk -c8, the stand-in receivers),
# one setup after another. Where bench.sh's CPU per request moves by several microseconds from
# round to round on a shared machine, this figure moves by a few hundred instructions, so a cut
# of a thousand shows. It is not time: cache misses and the kernel do not count.
#
# The work spins on the thread's CPU clock, which under callgrind (about 50 times slower) runs
# fewer instructions than natively, and not the same number each run, so its instructions
# (`work::spin`, and the clock reads inside it) are left out. The sampler samples CPU time too:
# it runs at RATE=2 Hz here, which under callgrind's slowdown takes about as many samples a
# request as the benchmark's 100 Hz does natively. The setups and the service's environment
# are bench.sh's (scripts/setups.sh), whose RUST_LOG INFO directive (for the span queue's
# totals) makes bare run the spans through the registry too.
#
#   scripts/service_instructions.sh                  # needs valgrind and wrk
#   SETUPS="traces" BIN=/tmp/old/rideshare scripts/service_instructions.sh
#   KEEP=/tmp/cg scripts/service_instructions.sh     # keeps each setup's callgrind file there,
#                                                    # for callgrind_annotate
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setups.sh
. scripts/setups.sh

SETUPS=${SETUPS:-"bare traces off sampler"}
DURATION=${DURATION:-15s}
RATE=${RATE:-2}
BIN=${BIN:-target/release/rideshare}
APP=127.0.0.1:${APP_PORT:-16100}
GRPC=127.0.0.1:${GRPC_PORT:-16417}
HTTP=127.0.0.1:${HTTP_PORT:-16418}
OTLP=http://$HTTP
PROTOCOL=http/protobuf
WORK_SCALE=0.0005
for tool in valgrind callgrind_control callgrind_annotate wrk; do
  command -v "$tool" >/dev/null || { echo "service_instructions: $tool is missing (apt-get install valgrind wrk)" >&2; exit 1; }
done
cargo build --release --quiet --bins --example receivers
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Counts one setup: "setup requests instructions_a_request".
count() {
  local setup=$1 env
  read -r -a env <<<"$(setup_env "$setup") $(service_env)"
  target/release/examples/receivers "$GRPC" "$HTTP" >/dev/null &
  local receivers=$!
  sleep 0.5
  env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/$setup" "$BIN" >"$out/$setup.log" 2>&1 &
  local service=$!
  until curl -fsS "http://$APP/" >/dev/null 2>&1; do sleep 0.5; done
  wrk -t1 -c8 -d3s "http://$APP/bike" >/dev/null # warm-up, not counted
  callgrind_control --zero "$service" >/dev/null
  wrk -t1 -c8 -d"$DURATION" "http://$APP/bike" >"$out/$setup.wrk"
  sleep 1 # the spans of the last requests leave
  callgrind_control --dump "$service" >/dev/null
  kill -TERM "$service"; wait "$service" || true
  kill -TERM "$receivers"; wait "$receivers" || true
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out/$setup.1" "$KEEP/callgrind.$setup"
  local requests
  requests=$(awk '/requests in/ {print $1}' "$out/$setup.wrk")
  callgrind_annotate --threshold=100 --auto=no "$out/$setup.1" 2>/dev/null |
    python3 -c '
import re, sys
setup, requests = sys.argv[1], int(sys.argv[2])
total = spin = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) .*PROGRAM TOTALS", line)
    if m:
        total = int(m.group(1).replace(",", ""))
    # Exclusive costs by function, whichever file (inlined code) they are listed under.
    m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+\S+?:(rideshare::service::work::spin|clock_gettime\S*|__vdso_clock_gettime)(?:\s|$)", line)
    if m:
        spin += int(m.group(1).replace(",", ""))
print(setup, requests, round((total - spin) / requests))
' "$setup" "$requests"
}

for setup in $SETUPS; do setup_env "$setup" >/dev/null; done
for setup in $SETUPS; do
  line=$(count "$setup")
  echo "$line" >>"$out/results"
  echo "$line" >&2
done
awk '
  { n[NR] = $1; v[$1] = $3; r[$1] = $2 }
  END {
    printf "%-8s %9s %14s %10s\n", "setup", "requests", "instr/request", "over bare"
    for (i = 1; i <= NR; i++) {
      s = n[i]
      over = ("bare" in v && s != "bare") ? sprintf("%+d", v[s] - v["bare"]) : "-"
      printf "%-8s %9d %14d %10s\n", s, r[s], v[s], over
    }
    if (("off" in v) && ("sampler" in v)) printf "labels (sampler minus off): %+d instructions a request\n", v["sampler"] - v["off"]
  }' "$out/results"
