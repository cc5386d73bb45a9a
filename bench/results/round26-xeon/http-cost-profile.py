#!/usr/bin/env python3
"""Round 26: where the CPU of an HTTP publish goes when the gateway idles between
requests (100 per second) and when it does not (5,000 per second), from a profile of the
gateway process alone. Run from the repository's root after a release build:

    python3 bench/results/round26-xeon/http-cost-profile.py > bench/results/round26-xeon/http-cost-profile.txt

For each rate, alternating, twice: a gateway (embedded bus, no subscribers; `http_cost.py`'s
setup), 20 warm-up requests, then N requests with `perf record -e cpu-clock/period=20000/
-g -p PID` on the gateway's threads only. A per-task cpu-clock samples only while one of the
gateway's threads runs, so unlike `perf record -a` (round 25) it does not wake idle
CPUs. Each run prints the gateway's CPU per request (`se.sum_exec_runtime`, as
`http_cost.py`), the same from the profile's samples (20 µs each), and the profile's
samples per request under each system call and in user space (`perf_stages.py --calls`)
by the code of the innermost frame (`--crates`) and by its function, in µs per request. Standard library
and `perf`.
"""
import collections
import os
import pathlib
import subprocess
import sys
import tempfile
import time

bench = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(bench))
import http_cost  # noqa: E402
import perf_stages  # noqa: E402

PERIOD_NS = 20_000
GATEWAY = "target/release/gateway"
RUNS = [(100, 2000), (5000, 10000)] * 2


def groups(data, pid):
    """ns of the process's samples by system call (or user space), by the code of the
    innermost frame, and by that frame's function."""
    calls, crates, leaves = collections.Counter(), collections.Counter(), collections.Counter()
    for spid, _, period, stack, dsos in perf_stages.samples(data):
        if spid == pid and stack:
            calls[perf_stages.call_of(stack, dsos)] += period
            crates[perf_stages.crate_of(stack[0], dsos[0])] += period
            leaves[stack[0][:110]] += period
    return calls, crates, leaves


def main():
    for rate, n in RUNS:
        with http_cost.gateway(GATEWAY) as (gw, _, internal), tempfile.TemporaryDirectory() as tmp:
            http_cost.wait_ready(internal)
            http_cost.publish(internal, 20, rate)  # warm-up
            data = os.path.join(tmp, "perf.data")
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-e", f"cpu-clock/period={PERIOD_NS}/", "-g", "-p", str(gw.pid), "-o", data],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # let perf attach before the measured requests
            before = http_cost.cpu_s(gw.pid)
            http_cost.publish(internal, n, rate)
            used = http_cost.cpu_s(gw.pid) - before
            perf.send_signal(2)
            perf.wait(timeout=60)
            calls, crates, leaves = groups(data, str(gw.pid))
        sampled = sum(calls.values())
        print(f"rate {rate}/s, {n} requests: {used * 1e6 / n:.1f} µs CPU per request (sum_exec_runtime), "
              f"{sampled / 1e3 / n:.1f} µs in the profile's samples")
        for name, ns in calls.most_common(8):
            print(f"  {ns / 1e3 / n:6.1f} µs  {name}")
        print("  by the code of the innermost frame:")
        for name, ns in crates.most_common(8):
            print(f"  {ns / 1e3 / n:6.1f} µs  {name}")
        print("  by the innermost frame's function:")
        for name, ns in leaves.most_common(15):
            print(f"  {ns / 1e3 / n:6.1f} µs  {name}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
