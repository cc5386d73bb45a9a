#!/usr/bin/env python3
"""Line up `bench stalls` with the batches of a bench run: was a slow batch a core taken away?

  ./target/release/bench stalls --seconds 200 > stalls.jsonl &
  ./target/release/bench run --size full --only fanout-15k --out /tmp/stalls-run
  python3 bench/stalls.py /tmp/stalls-run/<ts>-full.json stalls.jsonl

For every batch of every scenario with per-batch figures (runs from round 23 on carry each
batch's first publish time), prints its p99 (read) and the stalls whose late wake-up fell
inside its fan-out: from the end of its merge window to its max, plus the stall's own length
before it (a stall that ended inside the fan-out began before its wake-up). Then, per
scenario, the slow batches (p99 over 1.2 x the scenario's median batch) against the rest.
"""
import json
import statistics
import sys

SLOW = 1.2


def load_stalls(path):
    stalls = []
    for line in open(path):
        row = json.loads(line)
        if "woke_at_us" in row:
            stalls.append(row)
    return stalls


def stalled_ms(stalls, start_us, end_us):
    """Per CPU, ms of stall inside [start_us, end_us]."""
    per_cpu = {}
    for s in stalls:
        begin = s["woke_at_us"] - s["late_us"]
        overlap = min(end_us, s["woke_at_us"]) - max(start_us, begin)
        if overlap > 0:
            per_cpu[s["cpu"]] = per_cpu.get(s["cpu"], 0.0) + overlap / 1000.0
    return per_cpu


def main():
    run = json.load(open(sys.argv[1]))
    stalls = load_stalls(sys.argv[2])
    print(f"{len(stalls)} stalls over the watch; longest {max((s['late_us'] for s in stalls), default=0) / 1000:.1f} ms")
    for r in run["results"]:
        keys = r.get("per_batch_first_publish_us") or []
        if not keys:
            continue
        name = r["scenario"]["name"]
        window_us = r["scenario"].get("window_ms", 1000) * 1000
        median = statistics.median(b[1] for b in r["per_batch_excess_ms"])
        print(f"\n{name}: median batch p99 {median:.1f} ms")
        groups = {"slow": [], "other": []}
        for key, (p50, p99, mx) in zip(keys, r["per_batch_excess_ms"]):
            start = key + window_us
            per_cpu = stalled_ms(stalls, start, start + int(mx * 1000))
            total = sum(per_cpu.values())
            slow = p99 > SLOW * median
            groups["slow" if slow else "other"].append(total)
            cpus = " ".join(f"cpu{c} {ms:.1f}" for c, ms in sorted(per_cpu.items())) or "-"
            print(f"  batch p50 {p50:6.1f}  p99 {p99:6.1f}  max {mx:6.1f} ms{'  SLOW' if slow else '      '}  stalled: {cpus}")
        for group, totals in groups.items():
            if totals:
                print(f"  {group}: {len(totals)} batches, stalled ms per batch median {statistics.median(totals):.1f}, max {max(totals):.1f}")


if __name__ == "__main__":
    main()
