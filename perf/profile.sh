#!/usr/bin/env bash
# Profile a running iotcore (or any pid) for N seconds:
#
#   perf/profile.sh [PID] [SECONDS] [OUTDIR]
#
# PID defaults to the newest process named iotcore, SECONDS to 10, OUTDIR to
# perf/out/<date-time>. Writes:
#   perf.data       the raw samples (perf report -i OUTDIR/perf.data)
#   report.txt      perf report --stdio, by symbol with callers (children)
#   flat.txt        the same without call graphs: self time per symbol, the hot list
#   flamegraph.svg  if inferno is installed (cargo install inferno)
#
# Sampling uses the cpu-clock software event, which works in VMs without hardware
# counters (this machine has none). Call graphs use DWARF unwinding by default (Rust
# release builds have no frame pointers; iotcore's release profile keeps debug = 1 for
# symbols); CALLGRAPH=fp selects frame pointers, CALLGRAPH=lbr on bare metal.
# Run the load (iotcore-bench run ...) while this records.
set -euo pipefail

pid=${1:-}
secs=${2:-10}
out=${3:-"$(dirname "$0")/out/$(date +%Y%m%d-%H%M%S)"}
freq=${FREQ:-999}
callgraph=${CALLGRAPH:-dwarf,16384}

command -v perf >/dev/null || { echo "perf not found: apt-get install -y linux-perf" >&2; exit 1; }
if [ -z "$pid" ]; then
    pid=$(pgrep -n -x iotcore || true)
    [ -n "$pid" ] || { echo "no running iotcore; give a PID" >&2; exit 1; }
fi
[ -d "/proc/$pid" ] || { echo "no process $pid" >&2; exit 1; }
mkdir -p "$out"
echo "recording pid $pid ($(cat /proc/"$pid"/comm)) for ${secs}s at ${freq} Hz, call graph $callgraph -> $out" >&2

perf record -e cpu-clock -F "$freq" --call-graph "$callgraph" -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2> "$out/record.log" || {
    cat "$out/record.log" >&2
    exit 1
}
perf report -i "$out/perf.data" --stdio --children --percent-limit 0.5 > "$out/report.txt" 2>/dev/null
perf report -i "$out/perf.data" --stdio --no-children --sort comm,dso,symbol -g none --percent-limit 0.2 > "$out/flat.txt" 2>/dev/null
echo "wrote $out/report.txt and $out/flat.txt" >&2

if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
    perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf > "$out/stacks.folded"
    inferno-flamegraph --title "iotcore pid $pid, ${secs}s" < "$out/stacks.folded" > "$out/flamegraph.svg"
    echo "wrote $out/flamegraph.svg" >&2
else
    echo "inferno not installed (cargo install inferno): no flamegraph" >&2
fi
# The top of the flat profile, for a first look.
grep -v '^#' "$out/flat.txt" | grep -v '^$' | sed -E 's/[[:space:]-]+$//' | head -25
