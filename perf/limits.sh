#!/usr/bin/env bash
# Raise this shell's limits for benchmarking and show the kernel settings that matter.
#
#   source perf/limits.sh            # raise ulimit -n / -l in the current shell
#   perf/limits.sh [--apply]         # show (and with --apply, set) the sysctls below
#
# ulimit changes only reach the shell that runs them and its children: `source` the script
# (or run the broker from the same shell). iotcore-bench raises its own soft limits to the
# hard ones, and the brokers `compare` starts inherit them.
# sysctls are printed as suggestions; only --apply writes them (root needed), and they last
# until reboot.

_apply=0
for _a in "$@"; do [ "$_a" = "--apply" ] && _apply=1; done

# File descriptors: one per connection (plus a few). Soft limit up to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || echo "could not raise ulimit -n" >&2
# Locked memory: glommio (io_uring) needs 512 KiB per shard.
ulimit -l "$(ulimit -Hl)" 2>/dev/null || echo "could not raise ulimit -l" >&2

echo "ulimit -n: soft $(ulimit -Sn), hard $(ulimit -Hn)   (one descriptor per connection)"
echo "ulimit -l: soft $(ulimit -Sl), hard $(ulimit -Hl) KiB (glommio: 512 KiB per shard)"
echo "cores: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "kernel: $(uname -r); governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
echo

# name | suggested value | why
_sysctls="
net.core.somaxconn|65535|listen backlog: bursts of connects are not refused
net.ipv4.tcp_max_syn_backlog|65535|half-open connections during connect storms
net.ipv4.ip_local_port_range|1024 65535|ephemeral ports: one per client connection to one broker port
net.ipv4.tcp_tw_reuse|1|reuse TIME_WAIT ports for new outgoing connections between runs
fs.file-max|2097152|system-wide descriptor limit
fs.nr_open|2097152|ceiling for a process's hard ulimit -n
net.core.rmem_max|16777216|socket receive buffer ceiling
net.core.wmem_max|16777216|socket send buffer ceiling
kernel.perf_event_paranoid|1|perf record of other processes without root
"

printf "%-32s %-18s %-18s %s\n" "sysctl" "current" "suggested" "why"
while IFS='|' read -r _name _want _why; do
    [ -z "$_name" ] && continue
    _cur=$(sysctl -n "$_name" 2>/dev/null | tr '\t' ' ' || echo "n/a")
    # Single numbers already at or above the suggestion are left alone.
    if [[ "$_cur" =~ ^[0-9]+$ && "$_want" =~ ^[0-9]+$ ]] && [ "$_cur" -ge "$_want" ] && [ "$_name" != kernel.perf_event_paranoid ]; then
        printf "%-32s %-18s %-18s %s\n" "$_name" "$_cur" "(ok)" "$_why"
        continue
    fi
    printf "%-32s %-18s %-18s %s\n" "$_name" "${_cur:-n/a}" "$_want" "$_why"
    if [ "$_apply" = 1 ]; then
        sysctl -q -w "$_name=$_want" >/dev/null 2>&1 || echo "  (could not set $_name)" >&2
    fi
done <<< "$_sysctls"
[ "$_apply" = 1 ] && echo "applied (until reboot)" || echo "not applied: run with --apply to set them"
unset _apply _a _sysctls _name _want _why _cur
true
