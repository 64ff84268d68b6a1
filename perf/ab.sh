#!/usr/bin/env bash
# A/B two iotcore binaries on one scenario, runs alternating, one fresh broker per run:
#
#   perf/ab.sh RUNS BIN_A BIN_B -- iotcore-bench run options...
#   perf/ab.sh 4 /tmp/iotcore-before target/release/iotcore -- --scenario connections --connections 10000
#
# Prints one line per run (the bench's JSON figures, flattened) and keeps everything in
# $OUT (default perf/out/ab-<date-time>): each run's JSON, each broker's stderr.
#
# Why this script and not two `iotcore-bench run`s by hand:
# - Each run gets its own MQTT port. Connections closed by the previous run sit in
#   TIME_WAIT on the same 4-tuples, and the generator's connect() then searches the port
#   space: with the same port, the second run of `connections` measured 11.7k connects/s
#   instead of 18k, with the generator at 126% CPU.
# - Alternating A and B spreads the machine's drift over both (runs here vary by 10-30%).
# - A fresh broker and data directory per run: no state carries over.
#
# `PORTM` in the options is replaced with the run's admin port, e.g.
#   --metrics-url http://127.0.0.1:PORTM/metrics
# DURABLE=false runs the brokers without fsync ([storage] durable). EXTRA_TOML is appended to
# each broker's config, for other sections (e.g. EXTRA_TOML=$'[shadows]\nmax_in_flight_per_thing = 20').
# Run nothing else meanwhile: another load on the same cores skews both sides.
set -euo pipefail

if [ $# -lt 4 ] || [ "$4" != "--" ]; then
    sed -n '2,4p' "$0" >&2
    exit 2
fi
runs=$1 bin_a=$2 bin_b=$3
shift 4
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="${BENCH:-$root/target/release/iotcore-bench}"
out="${OUT:-$root/perf/out/ab-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -x "$bench" ] || { echo "no $bench: cargo build --release -p iotcore-bench" >&2; exit 1; }

# Ports below the ephemeral range (32768 and up here), where the generator's own client
# sockets would collide with a listener.
port=$((20000 + RANDOM % 10000))
run_one() {
    local tag=$1 bin=$2
    shift 2
    port=$((port + 3))
    local dir="$out/$tag"
    mkdir -p "$dir"
    cat > "$dir/iotcore.toml" <<EOF
[mqtt]
bind = "127.0.0.1:$port"
[admin]
bind = "127.0.0.1:$((port + 1))"
[http]
bind = "127.0.0.1:$((port + 2))"
[storage]
data_dir = "$dir/data"
durable = ${DURABLE:-true}
${EXTRA_TOML:-}
EOF
    "$bin" serve --config "$dir/iotcore.toml" 2> "$dir/broker.log" &
    local pid=$!
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$tag: the broker did not start:" >&2
            tail -3 "$dir/broker.log" >&2
            return 0
        fi
        sleep 0.05
    done
    "$bench" run --port "$port" --broker-pid "$pid" "${@//PORTM/$((port + 1))}" > "$dir/run.json" 2> "$dir/run.log" || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$dir/run.json" "$tag" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        flat = {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        print(sys.argv[2], " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items()))
PY
}

for i in $(seq 1 "$runs"); do
    run_one "A$i" "$bin_a" "$@"
    run_one "B$i" "$bin_b" "$@"
done
echo "results: $out" >&2
