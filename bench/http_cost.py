#!/usr/bin/env python3
"""Gateway CPU per `POST /api/publish`, one build against another.

    python3 bench/http_cost.py [--requests N] [--rate R] [--rounds K] [--batch] GATEWAY [GATEWAY ...]

Starts each gateway binary in turn (embedded bus, no subscribers, free ports), publishes
N small messages at R per second on one kept-open HTTP connection, and prints the
gateway's CPU per request (its threads' `se.sum_exec_runtime` from /proc, as `bench run`
reads it), its context switches per request (voluntary: it slept; involuntary: it was
preempted, as the publisher woken by a 202 can preempt it on a shared core) and, when
`perf` is installed, the futex calls it made and its system calls per request. Builds
alternate round by round, so drift of a shared machine hits them alike; with `--batch`
each build runs twice per round, the publisher under SCHED_OTHER and then under
SCHED_BATCH (which never preempts a running task). Standard library only.
"""

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":")[1]) / 1000.0
                        break
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def switches(pid):
    """Context switches of the process's threads so far: (voluntary, involuntary). A
    voluntary one is a thread going to sleep; an involuntary one, a thread preempted."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return vol, invol


def publish(port, n, rate):
    """N requests on one kept-open connection, each sent with one `sendall`: head and
    body in one segment, as curl and most HTTP clients send a small request.
    (`http.client` sends the body in a second segment, which wakes the gateway twice per
    request and doubled the cost this measures.)"""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies = sock.makefile("rb")
    start = time.monotonic()
    for i in range(n):
        body = json.dumps({"channel": "news", "data": {"i": i, "pad": "x" * 64}}).encode()
        head = (
            f"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body)
        status = replies.readline().split()
        length = 0
        while (line := replies.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        replies.read(length)
        if status[1:2] != [b"202"]:
            sys.exit(f"publish answered {status!r}")
        # Pacing of the load, not synchronisation: the next request's due time.
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    replies.close()
    sock.close()


def wait_ready(port, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling interval while the gateway binds
    sys.exit(f"gateway did not listen on {port} within {deadline_s} s")


@contextlib.contextmanager
def gateway(binary, *extra):
    """A gateway process on free ports, as (process, public port, internal port); ended
    when the block leaves."""
    public, internal = free_port(), free_port()
    gw = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{public}", "--internal-listen", f"127.0.0.1:{internal}", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield gw, public, internal
    finally:
        gw.terminate()
        gw.wait(timeout=30)


def one_run(binary, n, rate, batch):
    with gateway(binary) as (gw, _, internal):
        wait_ready(internal)
        if batch:
            # The gateway keeps the policy it started with; only this publisher changes.
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        publish(internal, 20, rate)  # warm-up
        perf = None
        if shutil.which("perf"):
            perf = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", "syscalls:sys_enter_futex,raw_syscalls:sys_enter",
                 "-p", str(gw.pid)],
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.2)  # let perf attach before the measured requests
        before, cs_before = cpu_s(gw.pid), switches(gw.pid)
        publish(internal, n, rate)
        used = cpu_s(gw.pid) - before
        cs_after = switches(gw.pid)
        cs = tuple((after - before) / n for after, before in zip(cs_after, cs_before))
        futex, syscalls = "-", "-"
        if perf:
            perf.send_signal(2)
            out = perf.communicate(timeout=10)[1]
            for line in out.splitlines():
                count = line.split(",")[0]
                if "sys_enter_futex" in line:
                    futex = count
                elif "raw_syscalls:sys_enter" in line and count.isdigit():
                    syscalls = f"{int(count) / n:.2f}"
        if batch:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return used * 1e6 / n, cs, futex, syscalls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gateways", nargs="+")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--batch",
        action="store_true",
        help="each build twice per round: the publisher under SCHED_OTHER, then under SCHED_BATCH",
    )
    a = ap.parse_args()
    if not (1 <= a.requests <= 100_000 and 0 < a.rate <= 10_000 and 1 <= a.rounds <= 20):
        sys.exit("--requests 1..100000, --rate 0..10000, --rounds 1..20")
    for r in range(1, a.rounds + 1):
        for g in a.gateways:
            for batch in (False, True) if a.batch else (False,):
                us, (vol, invol), futex, syscalls = one_run(g, a.requests, a.rate, batch)
                policy = " (publisher SCHED_BATCH)" if batch else ""
                print(
                    f"round {r} {g}{policy}: {us:.1f} µs CPU per request, context switches per request "
                    f"{vol:.2f} voluntary + {invol:.2f} involuntary, futex calls {futex}, "
                    f"system calls per request {syscalls}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
