#!/usr/bin/env python3
"""How the kernel placed the gateway's worker threads during each batch's fan-out, and why.

Round 23 (docs/PERFORMANCE-HISTORY.md) found a batch slow from its start whenever both gateway
worker threads ran on one core for its whole fan-out, and `cpu_by_batch.py` shows where
they ran but not how they got there. This reads the scheduler's own events for the
gateway's workers (tokio names the runtime's threads `tokio-rt-worker`; the bench's
one-worker runtimes share the name and are told apart by their process), with a few CPU samples that map each thread to its process, on the
monotonic clock, and reads them on the same boot:

  W='comm == "tokio-rt-worker"'
  perf record -a -k mono -o sched.data -e cpu-clock/period=4000000/ \\
      -e sched:sched_switch --filter 'prev_comm == "tokio-rt-worker" || next_comm == "tokio-rt-worker"' \\
      -e sched:sched_wakeup --filter "$W" -e sched:sched_migrate_task --filter "$W" -- \\
      ./target/release/bench run --size full --only fanout-15k --unpinned --out /tmp/sched-run
  perf script -i sched.data -F comm,pid,tid,cpu,time,event,trace > sched.txt
  python3 bench/sched_by_batch.py /tmp/sched-run/<ts>-full.json sched.txt

(The CPU samples take a period, 4 ms, not `-F`: perf applies `-F` to every event, and a
tracepoint sampled at a frequency keeps one event in so many, which leaves a thread
switched out twice in a row.)

For every batch it prints its p99 (read), how long in its fan-out (from the window's close
to the batch's p99) the two workers of its gateway were placed on the same CPU while both
had work (running or waiting to run), and every move of a worker from 50 ms before it to
its end: the CPUs, and what moved it: `wake` (it was asleep, and the thread that woke it,
named, placed it), or `balance` (it was waiting to run, and a load balancer moved it; the
thread on the CPU at the time is named, `idle` for none). It ends, per scenario, with the
slow batches (p99 over 1.2 x the median batch) against the rest, and first says how many of
the workers' switches do not follow from the one before (a switch-in of a thread already
running, a switch-out of one not running): more than a few means events were lost, and
the figures are not to be trusted.
"""
import argparse
import bisect
import collections
import json
import re
import statistics

from cpu_by_batch import LINE, wall_offset

SLOW = 1.2
WORKER = "tokio-rt-worker"
FIELD = re.compile(r"(\w+)=(\S+)")


def read(path, offset):
    """CPU samples (time, pid, tid, comm) and scheduler events (time, cpu, event, current
    tid, current comm, fields), each on the wall clock, sorted by time."""
    samples, events = [], []
    for line in open(path):
        m = LINE.match(line)
        if not m or not m[6]:
            continue
        comm, pid, tid, cpu, t, event, rest = m.groups()
        t = float(t) + offset
        if event.startswith("sched:"):
            # sched_switch: "prev_comm=a prev_pid=1 prev_prio=120 prev_state=S ==> next_comm=b next_pid=2 ..."
            events.append((t, int(cpu), event[6:], int(tid), comm, dict(FIELD.findall(rest or ""))))
        else:
            samples.append((t, int(pid), int(tid), comm))
    samples.sort()
    events.sort(key=lambda e: e[0])
    return samples, events


def gateway_threads(samples):
    """tid -> gateway pid, for the worker threads of every process whose main thread is
    named `gateway`."""
    comms, owner = collections.defaultdict(set), {}
    for _, pid, tid, comm in samples:
        comms[pid].add(comm)
        if comm == WORKER:
            owner[tid] = pid
    return {tid: pid for tid, pid in owner.items() if "gateway" in comms[pid]}


class Timeline:
    """Each worker's CPU and state (run / wait / sleep) over time, from its events."""

    def __init__(self, events, workers):
        self.changes = collections.defaultdict(list)  # tid -> [(t, cpu, state)]
        self.moves = []  # (t, tid, from, to, how, by)
        self.switches = self.broken = 0
        running = {}
        for t, cpu, ev, cur_tid, cur_comm, f in events:
            if ev == "sched_switch":
                prev, nxt = int(f["prev_pid"]), int(f["next_pid"])
                for tid, now in ((prev, False), (nxt, True)):
                    if tid in workers:
                        self.switches += 1
                        self.broken += running.get(tid, not now) == now
                        running[tid] = now
                if prev in workers:
                    state = "wait" if f["prev_state"].startswith("R") else "sleep"
                    self.changes[prev].append((t, cpu, state))
                if nxt in workers:
                    self.changes[nxt].append((t, cpu, "run"))
            elif ev == "sched_wakeup":
                tid = int(f["pid"])
                if tid in workers:
                    target = int(f["target_cpu"])
                    self.changes[tid].append((t, target, "wait"))
            elif ev == "sched_migrate_task":
                tid = int(f["pid"])
                if tid not in workers:
                    continue
                src, dst = int(f["orig_cpu"]), int(f["dest_cpu"])
                # A sleeping thread is moved only where it is woken (by the current thread);
                # one that waits to run, only by the load balancer of the CPU that pulls it
                # (or pushes it: `migration/N`).
                last = self.changes[tid][-1][2] if self.changes[tid] else "sleep"
                if last == "sleep":
                    how, by = "wake", f"{cur_comm}:{cur_tid}"
                else:
                    how, by = "balance", "idle" if cur_tid == 0 else f"{cur_comm}:{cur_tid}"
                self.moves.append((t, tid, src, dst, how, by))
                self.changes[tid].append((t, dst, last))
        self.times = {tid: [c[0] for c in ch] for tid, ch in self.changes.items()}

    def at(self, tid, t):
        """(cpu, state) of the worker at time t."""
        i = bisect.bisect_right(self.times.get(tid, []), t) - 1
        return (None, "sleep") if i < 0 else self.changes[tid][i][1:]

    def same_core_s(self, a, b, t0, t1):
        """Seconds in [t0, t1) when workers a and b both had work on the same CPU."""
        cuts = sorted({t0, t1, *(x for tid in (a, b) for x in self.times.get(tid, []) if t0 < x < t1)})
        total = 0.0
        for s, e in zip(cuts, cuts[1:]):
            (ca, sa), (cb, sb) = self.at(a, s), self.at(b, s)
            if ca is not None and ca == cb and sa != "sleep" and sb != "sleep":
                total += e - s
        return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_json")
    ap.add_argument("perf_script")
    ap.add_argument("--offset", type=float, default=None,
                    help="wall clock minus monotonic clock, s (default: read now, same boot)")
    a = ap.parse_args()
    samples, events = read(a.perf_script, wall_offset(a.offset))
    owner = gateway_threads(samples)
    line = Timeline(events, set(owner))
    print(f"{line.broken} of the gateway workers' {line.switches} switches do not follow from the one before")
    sample_times = [s[0] for s in samples]
    busy = collections.defaultdict(collections.Counter)
    for _, _, tid, _ in samples:
        if tid in owner:
            busy[owner[tid]][tid] += 1
    run = json.load(open(a.run_json))
    for r in run["results"]:
        keys = r.get("per_batch_first_publish_us")
        if not keys:
            continue
        name, w = r["scenario"]["name"], r["scenario"]["window_ms"] / 1000
        median = statistics.median(b[1] for b in r["per_batch_excess_ms"])
        print(f"\n{name}: median batch p99 {median:.1f} ms; per batch: ms of its fan-out with both "
              "workers on one CPU, and each move of a worker (ms from the window's close)")
        shares = {True: [], False: []}
        for i, (key, (_, p99, _)) in enumerate(zip(keys, r["per_batch_excess_ms"])):
            t0 = key / 1e6 + w
            t1 = t0 + p99 / 1000
            near = collections.Counter(owner[s[2]] for s in samples[bisect.bisect_left(sample_times, t0):
                                                                      bisect.bisect_left(sample_times, t1)]
                                       if s[2] in owner)
            if not near:
                print(f"  #{i:<2} p99 {p99:5.1f}: no gateway worker sampled")
                continue
            gw = near.most_common(1)[0][0]
            # its two runtime workers: the two of its threads sampled most (a blocking-pool
            # thread, if it has one, carries the same name and is rarely on a CPU)
            workers = [tid for tid, _ in busy[gw].most_common(2)]
            same = line.same_core_s(workers[0], workers[1], t0, t1) if len(workers) == 2 else 0.0
            slow = p99 > SLOW * median
            shares[slow].append(100 * same / (t1 - t0))
            moves = [f"{(t - t0) * 1000:+.0f}ms {tid}:{src}->{dst} {how} by {by}"
                     for t, tid, src, dst, how, by in line.moves if t0 - 0.05 <= t < t1 and tid in workers]
            print(f"  #{i:<2} p99 {p99:5.1f} {'SLOW' if slow else '    '} same CPU {same * 1000:5.1f} ms "
                  f"({100 * same / (t1 - t0):3.0f} %)  " + "; ".join(moves))
        for slow, label in ((True, "slow"), (False, "other")):
            v = shares[slow]
            if v:
                print(f"  {label} batches: {len(v)}, share of the fan-out with both workers on one CPU "
                      f"median {statistics.median(v):.0f} %, max {max(v):.0f} %")
    kinds = collections.Counter((how, by.rsplit(":", 1)[0]) for _, _, _, _, how, by in line.moves)
    print("\nevery move of a gateway worker in the trace, by cause and mover: " +
          ", ".join(f"{how} by {by} {n}" for (how, by), n in kinds.most_common()))


if __name__ == "__main__":
    main()
