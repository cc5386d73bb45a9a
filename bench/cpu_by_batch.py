#!/usr/bin/env python3
"""Who had the two cores during each batch's fan-out: the gateway, its clients, or nobody?

Round 23 found with it why a batch is sometimes slow from its start (docs/PERFORMANCE-HISTORY.md):
its fan-out ran with both gateway worker threads on one core. Record every CPU's task
2,000 times a second during a run, on the monotonic clock, then read it on the same boot
(the script converts to the wall clock the bench's publish times use; run it before a
reboot, and its offset holds to well under a millisecond):

  perf record -e cpu-clock -F 2000 -a -k mono -o clk.data -- \\
      ./target/release/bench run --size full --only fanout-15k --out /tmp/clk-run
  perf script -i clk.data -F pid,tid,comm,cpu,time > clk.txt
  python3 bench/cpu_by_batch.py /tmp/clk-run/<ts>-full.json clk.txt
  python3 bench/cpu_by_batch.py /tmp/clk-run/<ts>-full.json clk.txt --threads fanout-15k:3

The first form prints, per batch (runs from round 23 on carry each batch's first publish
time), its p50 and p99 and, per 20 ms from the close of its window, the share of the two
cores that the gateway processes, the load generator's (the bench's clients and
publisher) and everything else ran,
and what was left idle (the kernel does not sample an idle core on every host, so idle is
what the samples do not cover). `--threads SCENARIO:INDEX,...` prints, for those batches,
the samples of each gateway thread per 20 ms and the CPU it ran on. `--gaps` prints, per
batch, how long each CPU went without a single sample (5 ms steps from the window's close
to the batch's p99): on a host whose kernel samples an idle CPU too (`swapper`), a CPU
with no sample at all was not running the guest, the hypervisor had it (round 24).
`--clients` counts, per scenario, the batches whose client processes were all sampled on
one CPU between the publish and the batch's p99 read, slow batches and the rest apart
(round 27: latency-500's two client processes reading one after the other).
"""
import argparse
import bisect
import collections
import json
import re
import statistics
import time

BIN_S = 0.02
BINS = 8
SLOW = 1.2
# A line of `perf script -F comm,pid,tid,cpu,time[,event,trace]`: comm, pid, tid, cpu,
# time, and where printed the event and its fields (sched_by_batch.py reads those).
LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):(?:\s+(\S+?):?(?:\s+(.*))?)?\s*$")


def wall_offset(given=None):
    """Wall clock minus the monotonic clock, s: `given`, or read now (same boot)."""
    return given if given is not None else time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)


def read_samples(path, offset):
    """(wall time, cpu, pid, tid, comm) for every sample, sorted by time."""
    samples = []
    for line in open(path):
        m = LINE.match(line)
        if m and not (m[6] or "").startswith("sched:"):  # CPU samples only
            comm, pid, tid, cpu, t = m.groups()[:5]
            samples.append((float(t) + offset, int(cpu), int(pid), int(tid), comm))
    samples.sort()
    return samples


def classes(samples):
    """pid -> 'gateway', or 'bench' for the load generator's processes (its client workers,
    the driver that publishes, the bare write); any other pid is 'other'."""
    comms = collections.defaultdict(set)
    for _, _, pid, _, comm in samples:
        comms[pid].add(comm)
    return {pid: "gateway" if "gateway" in names else "bench"
            for pid, names in comms.items() if names & {"gateway", "bench"}}


def client_pids(samples):
    """The load generator's client processes: every process whose main thread is named
    `bench`, but the first started (the driver, `bench run`, which starts the others; pids
    grow through a recording unless they wrap) and any that became a gateway (`bench
    gateway` execs it)."""
    comms, mains = collections.defaultdict(set), set()
    for _, _, pid, tid, comm in samples:
        comms[pid].add(comm)
        if tid == pid and comm == "bench":
            mains.add(pid)
    candidates = sorted(pid for pid in mains if "gateway" not in comms[pid])
    return set(candidates[1:])


def one_cpu(samples, times, by_name):
    """Per scenario: of the batches in which at least two client processes were sampled
    between the publish and the batch's p99 read, how many had every client sample on one
    CPU (the clients reading one after the other while the other CPU did something else),
    slow batches (p99 over 1.2 x the median batch) and the rest apart."""
    clients = client_pids(samples)
    print("\nclient processes on one CPU: of the batches with two or more clients sampled from the "
          "publish to the p99 read, those whose client samples all fell on one CPU")
    for name, r in by_name.items():
        w = r["scenario"]["window_ms"] / 1000
        median = statistics.median(b[1] for b in r["per_batch_excess_ms"])
        counts = {True: [0, 0], False: [0, 0]}
        for key, (_, p99, _) in zip(r["per_batch_first_publish_us"], r["per_batch_excess_ms"]):
            t0 = key / 1e6 + w
            cpus = collections.defaultdict(set)
            for _, cpu, pid, _, _ in samples[bisect.bisect_left(times, t0):bisect.bisect_left(times, t0 + p99 / 1000)]:
                if pid in clients:
                    cpus[pid].add(cpu)
            if len(cpus) < 2:
                continue
            c = counts[p99 > SLOW * median]
            c[0] += 1
            c[1] += len(set().union(*cpus.values())) == 1
        print(f"  {name}: slow batches {counts[True][1]} of {counts[True][0]} on one CPU, "
              f"the rest {counts[False][1]} of {counts[False][0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_json")
    ap.add_argument("perf_script")
    ap.add_argument("--threads", default="")
    ap.add_argument("--hz", type=int, default=2000, help="perf record's -F (default 2000)")
    ap.add_argument("--gaps", action="store_true", help="per batch, each CPU's time without a sample")
    ap.add_argument("--clients", action="store_true",
                    help="per scenario, the batches whose client processes all ran on one CPU")
    ap.add_argument("--offset", type=float, default=None,
                    help="wall clock minus monotonic clock, s (default: read now, same boot)")
    a = ap.parse_args()
    samples = read_samples(a.perf_script, wall_offset(a.offset))
    times = [s[0] for s in samples]
    kind = classes(samples)
    run = json.load(open(a.run_json))
    per_bin = 2 * a.hz * BIN_S  # samples of two busy cores in one bin

    def window(t0, i):
        return samples[bisect.bisect_left(times, t0 + i * BIN_S):bisect.bisect_left(times, t0 + (i + 1) * BIN_S)]

    by_name = {r["scenario"]["name"]: r for r in run["results"] if r.get("per_batch_first_publish_us")}
    for name, r in by_name.items():
        w = r["scenario"]["window_ms"] / 1000
        median = statistics.median(b[1] for b in r["per_batch_excess_ms"])
        print(f"\n{name}: median batch p99 {median:.1f} ms. Each 20 ms from the window's close: "
              "% of the two cores run by gateway / load generator / other, and idle")
        for i, (key, (p50, p99, _)) in enumerate(zip(r["per_batch_first_publish_us"], r["per_batch_excess_ms"])):
            cells = []
            for b in range(BINS):
                u = collections.Counter()
                for _, _, pid, _, _ in window(key / 1e6 + w, b):
                    if pid:
                        u[kind.get(pid, "other")] += 1
                share = {k: 100 * v / per_bin for k, v in u.items()}
                gw, cl, other = (share.get(k, 0) for k in ("gateway", "bench", "other"))
                cells.append(f"{gw:3.0f}/{cl:2.0f}/{other:2.0f}/{max(0, 100 - gw - cl - other):3.0f}")
            flag = "SLOW" if p99 > SLOW * median else "    "
            print(f"  #{i:<2} p50 {p50:5.1f} p99 {p99:5.1f} {flag} " + " ".join(cells))
    if a.gaps:
        step = 0.005
        cpus = sorted({s[1] for s in samples})
        print("\nms of each batch's fan-out (window's close to p99) in which a CPU had no sample at all, "
              "in 5 ms steps, as cpu=ms")
        for name, r in by_name.items():
            w = r["scenario"]["window_ms"] / 1000
            for i, (key, (_, p99, _)) in enumerate(zip(r["per_batch_first_publish_us"], r["per_batch_excess_ms"])):
                t0 = key / 1e6 + w
                seen = {(int((t - t0) / step), cpu)
                        for t, cpu, _, _, _ in samples[bisect.bisect_left(times, t0):bisect.bisect_left(times, t0 + p99 / 1000)]}
                steps = int(p99 / 1000 / step)
                gaps = " ".join(f"{cpu}={5 * sum((k, cpu) not in seen for k in range(steps))}" for cpu in cpus)
                print(f"  {name} #{i:<2} p99 {p99:5.1f}: {gaps}")
    if a.clients:
        one_cpu(samples, times, by_name)
    for spec in filter(None, a.threads.split(",")):
        name, index = spec.rsplit(":", 1)
        r = by_name[name]
        key = r["per_batch_first_publish_us"][int(index)]
        print(f"\n{name} #{index} (p99 {r['per_batch_excess_ms'][int(index)][1]:.1f} ms): "
              "each gateway thread's samples per 20 ms, as thread@cpu=samples")
        for b in range(BINS):
            c = collections.Counter((tid, cpu) for _, cpu, pid, tid, _ in window(key / 1e6 + r["scenario"]["window_ms"] / 1000, b)
                                    if kind.get(pid) == "gateway")
            print("  " + " ".join(f"{tid}@{cpu}={n}" for (tid, cpu), n in sorted(c.items())))


if __name__ == "__main__":
    main()
