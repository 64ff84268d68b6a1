#!/usr/bin/env bash
# usage: perf/idle_memory.sh [BIN] [N] [EXTRA_TOML]
#
# What an idle connection costs the broker, by object size: starts BIN (an allocation
# census build, see perf/README.md) on a free loopback port, connects N idle clients with
# iotcore-bench, waits until they are idle (parked, by default), and prints, per connection:
#   - live allocations by size class (Rust's allocator calls: what the code keeps);
#   - mimalloc's committed and used bytes by block size (what the process pays for it,
#     fragmentation included; "waste" is committed minus used);
#   - the broker's resident memory growth.
# BIN defaults to target/census/release/iotcore, N to 10000.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/census/release/iotcore}
N=${2:-10000}
EXTRA=${3:-}
BENCH=$ROOT/target/release/iotcore-bench
[ -x "$BIN" ] || { echo "no census build at $BIN (see perf/README.md)" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "build iotcore-bench first: cargo build --release -p iotcore-bench" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
D=$(mktemp -d /tmp/iotcore-idle-memory.XXXXXX)
printf '[mqtt]\nbind = "127.0.0.1:%s"\n[admin]\nenabled = false\n[http]\nenabled = false\n[storage]\ndata_dir = "%s/data"\n%s\n' \
  "$PORT" "$D" "$EXTRA" > "$D/config.toml"
IOTCORE_CENSUS=$D/census "$BIN" serve --config "$D/config.toml" 2> "$D/broker.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 2
cp "$D/census" "$D/alloc.before"; cp "$D/census.iotcore-shard-1" "$D/areas.before"
RSS0=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
"$BENCH" run --scenario connections --connections "$N" --duration 8 --port "$PORT" --broker-pid $PID > "$D/run.json" &
BPID=$!
sleep 6   # connected, then idle for ~5 s: parked after [server] park_idle_ms
cp "$D/census" "$D/alloc.after"; cp "$D/census.iotcore-shard-1" "$D/areas.after"
RSS1=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
wait $BPID
python3 - "$D" "$N" "$RSS0" "$RSS1" <<'PY'
import sys
d, n, rss0, rss1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(f, cols):
    out = {}
    for line in open(f).read().split("\n")[1:]:
        if line:
            v = list(map(int, line.split()))
            out[v[0]] = v[1:cols]
    return out
b, a = load(f"{d}/alloc.before", 3), load(f"{d}/alloc.after", 3)
print(f"live allocations per connection (N={n}):")
tot = 0
for k in sorted(set(a) | set(b)):
    cnt = (a.get(k, [0, 0])[0] - b.get(k, [0, 0])[0]) / n
    by = (a.get(k, [0, 0])[1] - b.get(k, [0, 0])[1]) / n
    tot += by
    if abs(by) >= 0.5:
        print(f"  size <= {k:8d}: {cnt:6.2f} allocations {by:8.1f} B")
print(f"  total {tot:.1f} B")
b, a = load(f"{d}/areas.before", 4), load(f"{d}/areas.after", 4)
print("mimalloc by block size, per connection:")
tc = tu = 0
for k in sorted(set(a) | set(b)):
    c = (a.get(k, [0, 0, 0])[0] - b.get(k, [0, 0, 0])[0]) / n
    u = (a.get(k, [0, 0, 0])[1] - b.get(k, [0, 0, 0])[1]) / n
    tc += c; tu += u
    if abs(c) >= 2:
        print(f"  block {k:8d}: committed {c:7.1f} B  used {u:7.1f} B  waste {c - u:6.1f} B")
print(f"  total committed {tc:.1f} B, used {tu:.1f} B")
print(f"resident memory growth: {(rss1 - rss0) * 1024 / n:.1f} B per connection")
PY
