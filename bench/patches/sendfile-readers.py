#!/usr/bin/env python3
"""Round 23's reader-side check of round 15's sendfile experiment (bare-sendfile.patch).

Round 15 measured only the writer. A frame sent with sendfile(2) is handed to every socket
by reference to the same memfd pages, so the readers copy out of pages that stay in cache
instead of 15,000 separate copies: this asks whether that makes the readers' side cheaper.

Each run starts the patched `bench bare` (15,000 sockets, 40 rounds 300 ms apart) and three
raw-reader workers of 5,000 connections (127.0.0.2-4), and prints the writer's median CPU per
write over rounds 2-40 and the readers' CPU per frame over the same rounds (utime + stime of
the worker processes from /proc, read at the first round's end and at the last's). Modes
alternate, write then sendfile, PAIRS times.

  git apply bench/patches/bare-sendfile.patch && cargo build --release -p tests --bin bench
  python3 bench/patches/sendfile-readers.py 11000 2 > out.txt    # frame bytes, pairs
  git checkout tests/src/bench/bare.rs && cargo build --release --workspace --bins
  python3 bench/patches/sendfile-readers.py --summary out.txt     # medians, and each pair's difference
"""
import json
import os
import statistics
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "release", "bench")
SOCKETS, PER_WORKER = 15000, 5000


def children_of(shells):
    """The bench worker process under each `sleep | bench worker` shell."""
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name == "bench" and int(rest.split()[1]) in shells:
            found.append(int(p))
    return found


def cpu_s(pids):
    total = 0
    for p in pids:
        fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(mode, frame_bytes):
    env = dict(os.environ)
    if mode == "sendfile":
        env["PF_BARE_SF"] = "1"
    bare = subprocess.Popen(
        [BENCH, "bare", "--sockets", str(SOCKETS), "--frame-bytes", frame_bytes, "--rounds", "40", "--gap-ms", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    addr = bare.stdout.readline().split()[1]
    shells = [subprocess.Popen(
        f"sleep 60 | {BENCH} worker --target {addr} --source 127.0.0.{k} --conns {PER_WORKER} --channels x --raw-tcp",
        shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for k in (2, 3, 4)]
    try:
        readers, start, per_round = None, None, []
        for line in bare.stderr:
            if line.startswith("round"):
                if readers is None:
                    readers = children_of({s.pid for s in shells})
                    start = cpu_s(readers)
                per_round.append(float(line.rsplit("=", 1)[1]))
        end = cpu_s(readers)
        bare.wait()
    finally:
        for s in shells:
            os.killpg(s.pid, 15)
    frames = (len(per_round) - 1) * SOCKETS
    return {"mode": mode, "frame_bytes": int(frame_bytes), "readers": len(readers),
            "writer_us_per_write_median": statistics.median(per_round[1:]),
            "readers_us_per_frame": round((end - start) * 1e6 / frames, 2)}


def summary(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    for frame_bytes in sorted({r["frame_bytes"] for r in rows}, reverse=True):
        by_mode = {m: [r for r in rows if r["frame_bytes"] == frame_bytes and r["mode"] == m]
                   for m in ("write", "sendfile")}
        both = {m: [r["writer_us_per_write_median"] + r["readers_us_per_frame"] for r in rs]
                for m, rs in by_mode.items()}
        for mode, rs in by_mode.items():
            print(f"{frame_bytes} B {mode:8} runs {len(rs)}: writer {statistics.median(r['writer_us_per_write_median'] for r in rs):.2f}"
                  f" + readers {statistics.median(r['readers_us_per_frame'] for r in rs):.2f} µs a frame,"
                  f" together {statistics.median(both[mode]):.2f}")
        print(f"{frame_bytes} B sendfile - write, pair by pair:",
              " ".join(f"{s - w:+.2f}" for w, s in zip(both["write"], both["sendfile"])))


def main():
    if sys.argv[1] == "--summary":
        summary(sys.argv[2])
        return
    frame_bytes, pairs = sys.argv[1], int(sys.argv[2])
    for _ in range(pairs):
        for mode in ("write", "sendfile"):
            print(json.dumps(run(mode, frame_bytes)), flush=True)


if __name__ == "__main__":
    main()
