#!/usr/bin/env bash
# Instructions per request of `request_life` (crates/tracing-span-profiles/benches/span_cost.rs:
# one /bike request's three spans and five polls) and of `requests_in_flight` (the same requests,
# eight in flight on one thread, polled in turn), counted by callgrind: the same figure on every
# run, so a change of a few tens of nanoseconds in the label layer shows, where wall-clock
# timings on this machine move by several percent between runs. Instructions are not time
# (memory stalls and branch misses do not count), so confirm a change with the timings too.
#
#   scripts/request_instructions.sh                # needs valgrind (apt-get install valgrind)
#   VARIANTS="and_labels otel_only" IN_FLIGHT="" scripts/request_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANTS=${VARIANTS-"and_labels and_labels_no_sink and_entered_ids otel_only"}
IN_FLIGHT=${IN_FLIGHT-"and_labels otel_only"}
SECONDS_EACH=${SECONDS_EACH:-3}
command -v valgrind >/dev/null || { echo "request_instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

bench=$(cargo bench -p tracing-span-profiles --features bench-internals --bench span_cost \
  --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*span_cost[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bench" ] || { echo "request_instructions: could not build the span_cost benchmark" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# count GROUP VARIANT FUNCTION STEPS: instructions inside FUNCTION (not inlined, for this),
# divided by its calls, times the calls a request takes.
count() {
  local group=$1 variant=$2 function=$3 steps=$4
  valgrind --tool=callgrind --callgrind-out-file="$out/$group-$variant" \
    --toggle-collect="$function" \
    "$bench" --bench --profile-time "$SECONDS_EACH" "$group/service_settings_${variant}\$" \
    >/dev/null 2>&1
  python3 - "$out/$group-$variant" "$group/service_settings_$variant" "$function" "$steps" <<'PY'
import re, sys
path, name, function, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
names, calls, total = {}, 0, None
lines = open(path).read().split("\n")
for i, line in enumerate(lines):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m and m.group(3):
        names[m.group(2)] = m.group(3)
    # A call of the function: its cost line follows, with the number of calls.
    if m and m.group(1) and names.get(m.group(2)) == function \
            and lines[i + 1].startswith("calls="):
        calls += int(lines[i + 1].split()[0][len("calls="):])
    if line.startswith(("totals:", "summary:")):
        total = int(line.split()[1])
if not calls or total is None:
    sys.exit(f"request_instructions: no calls of {function} counted for {name}")
print(f"{name}: {total * steps / calls:.0f} instructions a request ({calls // steps} requests)")
PY
}

for variant in $VARIANTS; do
  count request_life "$variant" span_cost::one_request 1
done
# A request is five steps (polls) of `InFlight::step`.
for variant in $IN_FLIGHT; do
  count requests_in_flight "$variant" span_cost::InFlight::step 5
done
