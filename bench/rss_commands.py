#!/usr/bin/env python3
"""Gateway memory per connection by how the clients subscribed.

    python3 bench/rss_commands.py [--conns N] [--rounds K] [--big BYTES] GATEWAY

Starts GATEWAY (embedded bus, free ports) once per mode and round, opens N WebSocket
connections from this process, and prints the gateway's RSS growth (`VmRSS` from /proc)
per connection once they are all subscribed and idle:

- query:   subscribed at connect (`/ws?channels=news`), as `bench run` does;
- command: a `subscribe` command after connecting, a ~50-byte frame;
- big:     the same command with a BYTES-long `id` (default 12,000), i.e. one large
           client message per connection.

The difference between `command` and `big` is what a connection keeps after reading one
large message. Standard library only; `ulimit -n` must allow N + a few descriptors.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def client_text(payload):
    """A masked client text frame (zero mask key), any length up to 64 KiB."""
    b = payload.encode()
    if len(b) < 126:
        head = bytes([0x81, 0x80 | len(b)])
    else:
        head = bytes([0x81, 0x80 | 126]) + len(b).to_bytes(2, "big")
    return head + b"\0\0\0\0" + b


async def open_conns(port, n, mode, big):
    held = []
    gate = asyncio.Semaphore(200)

    async def one():
        async with gate:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            path = "/ws?channels=news" if mode == "query" else "/ws"
            w.write(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await w.drain()
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            if mode != "query":
                ident = '"' + "x" * big + '"' if mode == "big" else "1"
                cmd = '{"op":"subscribe","channels":["news"],"id":' + ident + "}"
                w.write(client_text(cmd))
                await w.drain()
                # The `subscribed` reply echoes the id: read until all of it is in.
                want = len(cmd)
                got = 0
                while got < want // 2:
                    chunk = await asyncio.wait_for(r.read(65536), 10)
                    if not chunk:
                        sys.exit("the gateway closed a connection")
                    got += len(chunk)
            held.append((r, w))

    await asyncio.gather(*[one() for _ in range(n)])
    return held


def measure(gateway, n, mode, big):
    public, internal = free_port(), free_port()
    gw = subprocess.Popen(
        [gateway, "--listen", f"127.0.0.1:{public}", "--internal-listen",
         f"127.0.0.1:{internal}", "--max-connections", str(n + 100),
         "--connect-burst-per-ip", "1000000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", public), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or gw.poll() is not None:
                    sys.exit("the gateway did not start")
                time.sleep(0.05)  # polling for the listener, bounded by the deadline
        before = rss_kib(gw.pid)

        async def run():
            held = await open_conns(public, n, mode, big)
            # Let the gateway finish its replies before reading its RSS.
            await asyncio.sleep(1)
            after = rss_kib(gw.pid)
            for _, w in held:
                w.close()
            return after

        after = asyncio.run(run())
        return (after - before) / n
    finally:
        gw.terminate()
        gw.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gateway")
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--big", type=int, default=12000)
    a = ap.parse_args()
    if not os.path.exists(a.gateway):
        sys.exit(f"{a.gateway}: no such file (cargo build --release first)")
    for r in range(1, a.rounds + 1):
        for mode in ("query", "command", "big"):
            kib = measure(a.gateway, a.conns, mode, a.big)
            print(f"round {r} {mode}: {a.conns} connections, RSS {kib:.2f} KiB per connection",
                  flush=True)


if __name__ == "__main__":
    main()
