#!/usr/bin/env bash
# Instructions per request of `request_life` (crates/tracing-span-profiles/benches/span_cost.rs:
# one /bike request's three spans and five polls), counted by callgrind: the same figure on every
# run, so a change of a few tens of nanoseconds in the label layer shows, where wall-clock
# timings on this machine move by several percent between runs. Instructions are not time
# (memory stalls and branch misses do not count), so confirm a change with the timings too.
#
#   scripts/request_instructions.sh                # needs valgrind (apt-get install valgrind)
#   VARIANTS="and_labels otel_only" scripts/request_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANTS=${VARIANTS:-"and_labels and_labels_no_sink and_entered_ids otel_only"}
SECONDS_EACH=${SECONDS_EACH:-3}
command -v valgrind >/dev/null || { echo "request_instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

bench=$(cargo bench -p tracing-span-profiles --features bench-internals --bench span_cost \
  --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*span_cost[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bench" ] || { echo "request_instructions: could not build the span_cost benchmark" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for variant in $VARIANTS; do
  # Counts only inside `one_request` (not inlined for this), then divides by its calls.
  valgrind --tool=callgrind --callgrind-out-file="$out/$variant" \
    --toggle-collect='span_cost::one_request' \
    "$bench" --bench --profile-time "$SECONDS_EACH" "request_life/service_settings_${variant}\$" \
    >/dev/null 2>&1
  python3 - "$out/$variant" "$variant" <<'PY'
import re, sys
names, calls, total = {}, 0, None
lines = open(sys.argv[1]).read().split("\n")
for i, line in enumerate(lines):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m and m.group(3):
        names[m.group(2)] = m.group(3)
    # A call of one_request: its cost line follows, with the number of calls.
    if m and m.group(1) and names.get(m.group(2)) == "span_cost::one_request" \
            and lines[i + 1].startswith("calls="):
        calls += int(lines[i + 1].split()[0][len("calls="):])
    if line.startswith(("totals:", "summary:")):
        total = int(line.split()[1])
if not calls or total is None:
    sys.exit(f"request_instructions: no calls of one_request counted for {sys.argv[2]}")
print(f"request_life/service_settings_{sys.argv[2]}: {total / calls:.0f} instructions a request ({calls} requests)")
PY
done
