#!/usr/bin/env python3
"""Where a gateway's `sendto` time goes, per frame sent, from a system-wide perf profile.

    perf record -a -F 1000 -g -o perf.data -- COMMAND      # e.g. a `bench run --only fanout-15k`
    python3 bench/perf_stages.py perf.data PID:FRAMES[:FROM:TO] [PID:FRAMES[:FROM:TO] ...]
    python3 bench/perf_stages.py --calls perf.data PID

PID is a gateway process in the profile (`perf script -F comm,pid` lists them; the bench
starts one per scenario, in scenario order), FRAMES the frames it sent
(`pushfleet_frames_sent_total`, the report's "frames" column). A scenario's bare writes
are `bench` processes started after its gateway, which write with `sendto` too: give
one with its writes (the JSON's `bare.writes`, `bare_raw.writes`) to set it beside the
gateway. Each of the process's samples whose stack holds `__x64_sys_sendto` is put under
the first function of STAGES found on its stack (so the most specific stage wins: a
sample in `__inet_lookup_established` under `tcp_v4_rcv` counts as the lookup), and each
stage is printed as ns per frame: the samples' periods (ns of CPU for `perf record`'s
default cpu-clock event) ÷ frames. The columns follow the order of the PID:FRAMES
arguments. With FROM:TO (seconds of perf's clock, TO excluded; `--seconds` finds them)
only the samples in that window count (one process may be given twice, over two
windows), and FRAMES are the frames sent in it: a
scenario's publish phase leaves out the gateway's close frames at shutdown, a bare
write's rounds leave out its answers to the readers' upgrade requests.
With `--calls`, one process's samples instead: each under the system call on its
stack (`__x64_sys_*`, `do_writev`, ...), "kernel, no system call" (an interrupt, say) or,
when the stack has no kernel frame, "user space", with the user-space functions that
make most of the last.

    python3 bench/perf_stages.py --seconds perf.data PID
    python3 bench/perf_stages.py --calls perf.data PID FROM TO

`--seconds` prints the process's CPU in the profile second by second (perf's clock), with
its `sendto` and user-space shares, to find a scenario's publish phase (the seconds of
steady `sendto`); FROM and TO (seconds, TO excluded) then limit `--calls` to it.

    python3 bench/perf_stages.py --crates perf.data PID

`--crates` puts each of the process's samples under the code its innermost frame ran:
"kernel", a shared library (`libc.so.6`), or the Rust crate that the frame's function
belongs to (the first path segment of its name: `hyper` for
`hyper::proto::h1::role::...`, `warp` for `<warp::filter::and::AndFuture<T,U> as
core::future::future::Future>::poll`), to see which layer of a request costs what.
Standard library only; needs `perf`.
"""

import collections
import math
import subprocess
import sys

# Innermost first: the loopback receive path the sender runs, then the send path.
STAGES = [
    "sock_def_readable",
    "__inet_lookup_established",
    "tcp_v4_rcv",
    "net_rx_action",
    "__dev_queue_xmit",
    "tcp_ack",
    "__tcp_transmit_skb",
    "tcp_write_xmit",
    "_copy_from_iter",
    "tcp_stream_alloc_skb",
    "tcp_sendmsg_locked",
    "release_sock",
    "tcp_sendmsg",
    "__sys_sendto",
]


def samples(data):
    """(pid, time in s, period in ns, [function per frame, leaf first], [each frame's file,
    "[kernel.kallsyms]" for the kernel's]) for every sample."""
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,time,period,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pid, at, period, stack, dsos = None, 0.0, 0, [], []
    for line in out.splitlines() + [""]:
        if not line.strip():
            if pid is not None:
                yield pid, at, period, stack, dsos
            pid, at, period, stack, dsos = None, 0.0, 0, [], []
        elif not line[0].isspace():
            # "comm pid/tid time: period" (comm may hold spaces: count from the end)
            fields = line.split()
            pid, period = fields[-3].split("/")[0], int(fields[-1])
            at = float(fields[-2].rstrip(":"))
        else:
            # "address symbol (dso)"; a symbol may hold spaces
            frame = line.strip().split(None, 1)[1] if len(line.split()) > 1 else "? (?)"
            sym, _, dso = frame.rpartition(" (")
            stack.append(sym or "?")
            dsos.append(dso.rstrip(")"))


def in_kernel(dso):
    return dso.startswith("[kernel")


def call_of(stack, dsos):
    """The system call a sample was in, "kernel, no system call" or "user space"."""
    if not any(map(in_kernel, dsos)):
        return "user space"
    frames = [f for f, d in zip(stack, dsos) if in_kernel(d)]
    return next(
        (f for f in reversed(frames) if f.startswith(("__x64_sys_", "__do_sys_")) or f == "do_writev"),
        "kernel, no system call",
    )


def seconds(data, pid):
    by = collections.defaultdict(collections.Counter)
    for p, at, period, stack, dsos in samples(data):
        if p == pid:
            second = by[int(at)]
            second["all"] += period
            second[call_of(stack, dsos)] += period
    if not by:
        sys.exit(f"no samples of pid {pid}")
    print(f"pid {pid}, ms of CPU per second of the profile: all, sendto, user space")
    for t in sorted(by):
        c = by[t]
        print(f"{t:8d} {c['all'] / 1e6:7.0f} {c['__x64_sys_sendto'] / 1e6:7.0f} {c['user space'] / 1e6:7.0f}")


def calls(data, pid, start=-math.inf, end=math.inf):
    by, user = collections.Counter(), collections.Counter()
    for p, at, period, stack, dsos in samples(data):
        if p != pid or not start <= at < end:
            continue
        call = call_of(stack, dsos)
        by[call] += period
        if call == "user space":
            user[stack[0] if stack else "?"] += period
    total = sum(by.values())
    if not total:
        sys.exit(f"no samples of pid {pid}")
    span = "" if math.isinf(start) else f" from {start:g} s to {end:g} s"
    print(f"pid {pid}: {total / 1e6:.0f} ms of CPU in the profile{span}")
    for name, ns in by.most_common():
        print(f"{100 * ns / total:6.1f} % {ns / 1e6:7.0f} ms  {name}")
    print("user space, by function:")
    for name, ns in user.most_common(15):
        print(f"{100 * ns / total:6.1f} % {ns / 1e6:7.0f} ms  {name}")


def crate_of(sym, dso):
    """Who ran a frame: "kernel", a library's file name, or the Rust crate of its function."""
    if in_kernel(dso):
        return "kernel"
    if dso.endswith(".so") or ".so." in dso:
        return dso.rsplit("/", 1)[-1]
    name = sym.lstrip("<").removeprefix("&mut ").removeprefix("&").lstrip("<")
    head, sep, _ = name.partition("::")
    return head if sep and head.isidentifier() else "other (no crate path)"


def crates(data, pid):
    by = collections.Counter()
    for p, _, period, stack, dsos in samples(data):
        if p == pid and stack:
            by[crate_of(stack[0], dsos[0])] += period
    total = sum(by.values())
    if not total:
        sys.exit(f"no samples of pid {pid}")
    print(f"pid {pid}: {total / 1e6:.0f} ms of CPU in the profile, by the code of the innermost frame")
    for name, ns in by.most_common():
        print(f"{100 * ns / total:6.1f} % {ns / 1e6:7.1f} ms  {name}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--crates":
        crates(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--calls":
        calls(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--calls":
        calls(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--seconds":
        seconds(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) < 3 or any(":" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    data = sys.argv[1]
    # One column per argument (the same process may be given twice, over two windows):
    # (pid, frames, from, to).
    columns = []
    for arg in sys.argv[2:]:
        w = arg.split(":")
        if len(w) not in (2, 4):
            sys.exit(__doc__)
        start, end = (float(w[2]), float(w[3])) if len(w) == 4 else (-math.inf, math.inf)
        columns.append((w[0], int(w[1]), start, end))
    if any(frames <= 0 for _, frames, _, _ in columns):
        sys.exit("FRAMES must be positive")
    by = [collections.Counter() for _ in columns]
    for pid, at, period, stack, _ in samples(data):
        if "__x64_sys_sendto" not in stack:
            continue
        stage = next((s for s in STAGES if s in stack), "other")
        for (p, _, start, end), counter in zip(columns, by):
            if p == pid and start <= at < end:
                counter[stage] += period
    print("ns per frame inside sendto, by stage; columns: " + " ".join(f"pid {c[0]}" for c in columns))
    for stage in STAGES + ["other"]:
        row = [counter[stage] / c[1] for c, counter in zip(columns, by)]
        print(f"{stage:28s}" + "".join(f"{v:9.0f}" for v in row))
    totals = [sum(counter.values()) / c[1] for c, counter in zip(columns, by)]
    print(f"{'all of sendto':28s}" + "".join(f"{v:9.0f}" for v in totals))


if __name__ == "__main__":
    main()
