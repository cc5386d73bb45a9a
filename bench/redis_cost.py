#!/usr/bin/env python3
"""Gateway CPU per message taken in from Redis, arriving one by one or in bursts.

    python3 bench/redis_cost.py [--messages N] [--rounds K] GATEWAY [GATEWAY ...]

Starts a `redis-server` on a free port and each gateway binary in turn on it (no
subscribers: a message is read, decoded and dropped as `no_subscribers`, which is the
gateway's cost of taking it in), then publishes N broadcasts (Pushfleet envelopes) at 100
per second, once one `PUBLISH` every 10 ms, once in bursts of 5 every 50 ms and once in
bursts of 20 every 200 ms, and prints the gateway's CPU per message for each (its
threads' `se.sum_exec_runtime`, as `bench run` reads it). How much of a message's cost is
waking the gateway up shows as the difference. Builds alternate round by round. Standard
library only.
"""

import argparse
import http.client
import socket
import struct
import subprocess
import sys
import time

from http_cost import cpu_s, free_port, gateway, wait_ready

PATTERNS = [(1, 0.010), (5, 0.050), (20, 0.200)]  # (messages per burst, seconds between)


def envelope(data, ms):
    """The MessagePack map {"v":1,"d":<bin>,"t":<u64>} (DESIGN §4.3)."""
    return (
        b"\x83\xa1v\x01\xa1d\xc4" + bytes([len(data)]) + data + b"\xa1t\xcf" + struct.pack(">Q", ms)
    )


def publish_command(key, payload):
    parts = [b"PUBLISH", key, payload]
    out = b"*%d\r\n" % len(parts)
    for p in parts:
        out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out


def read_replies(conn, n):
    """Reads n integer replies (`:<subscribers>\\r\\n`)."""
    got = b""
    while got.count(b"\r\n") < n:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit("redis-server closed the connection")
        got += chunk


def run_pattern(conn, pid, total, burst, gap):
    key = b"pushfleet:b"
    data = b'{"pad":"' + b"x" * 64 + b'"}'
    before = cpu_s(pid)
    start = time.monotonic()
    sent = 0
    while sent < total:
        n = min(burst, total - sent)
        cmd = b"".join(
            publish_command(key, envelope(data, int(time.time() * 1000))) for _ in range(n)
        )
        conn.sendall(cmd)
        read_replies(conn, n)
        sent += n
        # Pacing of the load, not synchronisation: the next burst's due time.
        delay = start + (sent // burst) * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(0.2)  # let the last messages be taken in before reading the CPU
    return (cpu_s(pid) - before) * 1e6 / total


def wait_subscribed(port, deadline_s=10.0):
    """Until `/readyz` answers 200: the gateway is subscribed on Redis."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)  # polling interval while the gateway connects to Redis
    sys.exit(f"gateway on {port} not ready within {deadline_s} s")


def one_run(binary, redis_port, total):
    with gateway(binary, "--redis-url", f"redis://127.0.0.1:{redis_port}") as (gw, public, internal):
        wait_ready(internal)
        wait_subscribed(public)
        with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as conn:
            run_pattern(conn, gw.pid, 20, 1, 0.01)  # warm-up
            return [run_pattern(conn, gw.pid, total, b, g) for b, g in PATTERNS]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gateways", nargs="+")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not (20 <= a.messages <= 100_000 and 1 <= a.rounds <= 20):
        sys.exit("--messages 20..100000, --rounds 1..20")
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_ready(port)
        for r in range(1, a.rounds + 1):
            for g in a.gateways:
                costs = one_run(g, port, a.messages)
                shown = ", ".join(
                    f"{b} per {gap * 1000:.0f} ms: {us:.1f} µs" for (b, gap), us in zip(PATTERNS, costs)
                )
                print(f"round {r} {g}: gateway CPU per message — {shown}", flush=True)
    finally:
        redis.terminate()
        redis.wait(timeout=30)


if __name__ == "__main__":
    main()
