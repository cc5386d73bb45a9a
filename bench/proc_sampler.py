#!/usr/bin/env python3
"""Samples what the kernel shows of a bench run, to line slow batches up with it.

    python3 bench/proc_sampler.py record OUT [--interval-ms 20] [--match TEXT]
    python3 bench/proc_sampler.py bursts OUT

`record` writes one line per interval until it is killed: the time, the machine's
function-call and rescheduling IPIs (/proc/interrupts CAL, RES) and idle ticks
(/proc/stat) over the interval, and, for every process whose command line contains
--match (default: the bench's gateways and client workers), the voluntary and
involuntary context switches of all its threads (/proc/<pid>/task/*/status), gateway
and workers apart.

`bursts` groups the samples into busy periods (both cores busy: at most one idle tick in
the interval) and prints, per period of 40 ms or more, its start, length and the sums
of each column: a gateway batch, a bare-write round, a connect phase.

Run it beside a bench run, e.g.:

    python3 bench/proc_sampler.py record /tmp/s.log & pid=$!
    ./target/release/bench run --size full --only fanout-15k --out /tmp/r
    kill $pid; python3 bench/proc_sampler.py bursts /tmp/s.log
"""
import argparse
import glob
import time

COLUMNS = "t CAL RES idle gw_vol gw_invol workers_vol workers_invol"


def irqs():
    out = {}
    with open("/proc/interrupts") as f:
        for line in f:
            p = line.split()
            if p and p[0] in ("CAL:", "RES:"):
                out[p[0][:-1]] = sum(int(x) for x in p[1:] if x.isdigit())
    return out


def idle_ticks():
    with open("/proc/stat") as f:
        return int(f.readline().split()[4])


def matching(patterns):
    """{pattern: [pid]} for processes whose command line contains each pattern."""
    found = {p: [] for p in patterns}
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        for p in patterns:
            if p in cmd:
                found[p].append(path.split("/")[2])
    return found


def switches(pids):
    """{thread: (voluntary, involuntary)} over the threads of `pids`."""
    out = {}
    for pid in pids:
        for status in glob.glob(f"/proc/{pid}/task/*/status"):
            vol = invol = 0
            try:
                with open(status) as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            vol = int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            invol = int(line.split()[1])
            except OSError:
                continue
            out[status] = (vol, invol)
    return out


def grew(cur, prev):
    """Context switches since `prev`, over the threads alive at both samples."""
    common = cur.keys() & prev.keys()
    return (
        sum(cur[k][0] - prev[k][0] for k in common),
        sum(cur[k][1] - prev[k][1] for k in common),
    )


def record(args):
    patterns = [b"release/gateway ", b"bench worker"]
    if args.match:
        patterns = [args.match.encode(), b"bench worker"]
    deadline = time.time() + args.max_seconds
    with open(args.out, "w") as out:
        out.write("# " + COLUMNS + "\n")
        prev, pids, scanned = None, {}, 0.0
        while time.time() < deadline:
            time.sleep(args.interval_ms / 1000)
            now = time.time()
            if now - scanned > 1.0:
                pids, scanned = matching(patterns), now
            i = irqs()
            cur = (
                (i.get("CAL", 0), i.get("RES", 0), idle_ticks()),
                switches(pids[patterns[0]]),
                switches(pids[patterns[1]]),
            )
            if prev is not None:
                machine = [a - b for a, b in zip(cur[0], prev[0])]
                row = machine + [*grew(cur[1], prev[1]), *grew(cur[2], prev[2])]
                out.write(f"{now:.3f} " + " ".join(map(str, row)) + "\n")
                out.flush()
            prev = cur


def bursts(args):
    rows = []
    with open(args.out) as f:
        for line in f:
            if not line.startswith("#"):
                p = line.split()
                rows.append((float(p[0]), [int(x) for x in p[1:]]))
    if not rows:
        return
    t0, interval = rows[0][0], (rows[-1][0] - rows[0][0]) / max(len(rows) - 1, 1)
    print("start_s length_ms " + " ".join(COLUMNS.split()[1:]))
    cur = None
    for t, v in rows + [(0.0, None)]:
        if v is not None and v[2] <= 1:
            if cur is None:
                cur = [t, t, [0] * len(v)]
            cur[1] = t
            cur[2] = [a + b for a, b in zip(cur[2], v)]
            continue
        if cur is not None:
            length = (cur[1] - cur[0]) * 1000 + interval * 1000
            if length >= 40:
                print(f"{cur[0] - t0:.2f} {length:.0f} " + " ".join(map(str, cur[2])))
        cur = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out")
    r.add_argument("--interval-ms", type=float, default=20)
    r.add_argument("--match", help="command-line text of the processes to count as the gateway")
    r.add_argument("--max-seconds", type=float, default=900, help="stop by itself after this long")
    b = sub.add_parser("bursts")
    b.add_argument("out")
    args = ap.parse_args()
    record(args) if args.cmd == "record" else bursts(args)


if __name__ == "__main__":
    main()
