#!/usr/bin/env bash
# Run a command pinned to the given CPUs (taskset), e.g. to keep a load generator and a
# broker off each other's cores:
#
#   perf/pin.sh 1 target/release/iotcore serve --config iotcore.toml
#   perf/pin.sh 0 target/release/iotcore-bench run --scenario pairs --port 1883
#   perf/pin.sh 0-3,6 CMD...
#
# Note: taskset sets the CPUs every thread of the broker may run on; its shards move
# freely among them unless `[server] pin_shards = true`, which binds each shard to one of
# them. With [server] shards = 1 and `pin.sh 1`, the broker uses core 1 only.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CPULIST COMMAND [ARGS...]   (CPULIST as taskset -c takes it: 0 | 1,3 | 0-2)" >&2
    exit 2
fi
cpus=$1
shift
command -v taskset >/dev/null || { echo "taskset not found (Debian: util-linux)" >&2; exit 1; }
echo "pinned to CPUs $cpus: $*" >&2
exec taskset -c "$cpus" "$@"
