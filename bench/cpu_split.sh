#!/usr/bin/env bash
# Where the gateway's and the client workers' CPU goes while a benchmark publishes: user vs
# kernel mode by the kernel's ticks (utime/stime of /proc/<pid>/stat, what `bench run`'s
# `gateway_sys_s` reads) and, when `perf` is installed, by perf's own sampling
# (`perf record -e cpu-clock -a`), plus each process's context switches: all, and the
# voluntary ones (the process went to sleep; the rest were preemptions).
#
#     ./target/release/bench run --size full --only fanout-15k-redis &
#     bench/cpu_split.sh [SECONDS] [DELAY]
#
# Waits for the run's worker processes, then DELAY seconds more (default 3: connecting is
# over, publishing has begun), then measures for SECONDS (default 6; keep it inside the
# scenario's 10 s publish phase). docs/PERFORMANCE-HISTORY.md, round 11, quotes its figures.
set -euo pipefail
secs=${1:-6}
delay=${2:-3}

for _ in $(seq 120); do
    [ "$(pgrep -f 'bench worker' | wc -l)" -ge 2 ] && break
    sleep 0.5 # polling for another program's processes: there is nothing to wait on
done
sleep "$delay" # let the scenario reach its publish phase
gw=$(pgrep -f 'release/gateway --list' | head -1)
workers=$(pgrep -f 'bench worker' | tr '\n' ' ')
[ -n "$gw" ] && [ -n "$workers" ] || { echo "no gateway or workers running" >&2; exit 1; }

# pid utime stime context-switches voluntary-switches, for every measured process.
snapshot() {
    for p in $gw $workers; do
        # All the process's threads' switches, and the voluntary ones, in one pass.
        local switches
        switches=$(cat /proc/"$p"/task/*/status 2>/dev/null |
            awk '/ctxt_switches/ {n += $2} /^voluntary_ctxt_switches/ {v += $2} END {print n + 0, v + 0}')
        echo "$p $(awk '{sub(/.*\) /, ""); print $12, $13}' /proc/"$p"/stat) $switches"
    done
}

before=$(snapshot)
data=$(mktemp)
if command -v perf >/dev/null; then
    perf record -q -e cpu-clock -F 1000 -a -o "$data" -- sleep "$secs" 2>/dev/null
else
    sleep "$secs" # the measurement window
fi
after=$(snapshot)

samples=$(mktemp)
if [ -s "$data" ]; then
    # pid, then "k" or "u" for each sample, by whether its address is the kernel's.
    perf script -i "$data" -G -F pid,ip 2>/dev/null |
        awk '{print $1, ($2 ~ /^ffff/ ? "k" : "u")}' >"$samples"
fi

echo "over ${secs}s; ticks: $(getconf CLK_TCK)/s in /proc, perf: 1000 samples/s per busy core"
printf '%-8s %-8s %12s %12s %12s %14s %10s\n' pid role 'ticks user%' 'perf user%' 'CPU s' 'ctx switches' 'voluntary'
join <(echo "$before" | sort) <(echo "$after" | sort) | while read -r p u0 s0 c0 v0 u1 s1 c1 v1; do
    role=worker
    [ "$p" = "$gw" ] && role=gateway
    du=$((u1 - u0)) ds=$((s1 - s0))
    tick_user=$(awk -v u="$du" -v s="$ds" 'BEGIN {printf (u + s ? "%.1f" : "-"), 100 * u / (u + s)}')
    perf_user=$(awk -v p="$p" '$1 == p {n++; if ($2 == "u") u++} END {printf (n ? "%.1f" : "-"), 100 * u / n}' "$samples")
    cpu=$(awk -v t="$((du + ds))" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')
    printf '%-8s %-8s %12s %12s %12s %14s %10s\n' "$p" "$role" "$tick_user" "$perf_user" "$cpu" "$((c1 - c0))" "$((v1 - v0))"
done
rm -f "$data" "$samples"
