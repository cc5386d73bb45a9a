# The figures of docs/PERFORMANCE.md's round 26 section, from the runs' JSON:
#   python3 bench/results/round26-xeon/derived.py > bench/results/round26-xeon/derived.txt
import pathlib
import re
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import clients_idle, load, report, result, run_headers, slow_batches_with_steal, slow_gateway_vs_bare  # noqa: E402

FULL = ["DA 20261127T112526Z", "DB 20261127T113651Z", "DC 20261127T114353Z", "DE 20261127T121127Z"]
AB = ["A1 20261127T114800Z", "B1 20261127T115007Z", "A2 20261127T115215Z", "B2 20261127T115421Z"]
DD = "DD 20261127T115614Z"

report("with --pin-workers (round 23's code), Intel Xeon", FULL)

# What one system call and one bare loopback write cost in each run, the build it
# measured, whether its gateways were pinned, and the host's steal per scenario.
run_headers(FULL + AB + [DD])

# Slow batches of the gateway beside slow rounds of the bare write, same runs, same rule.
slow_gateway_vs_bare(FULL)

# Every slow batch of the full runs and of the A/B (A unpinned, B pinned), with the host's
# steal during its fan-out.
slow_batches_with_steal(FULL + AB)

# DD: the clients under SCHED_IDLE; the median batch's p99 to arrival on the socket.
clients_idle(DD)

# The loopback write against round 25's, and each median batch against its CPU floor:
# the bare write of the fanout-15k scenarios of each round's full runs (median), and per
# scenario run its median batch minus its floor.
ROUND25 = ["CV 20261127T093712Z", "CW 20261127T094527Z", "CX 20261127T095126Z", "CZ 20261127T102001Z"]
for label, runs in (("round 25", ROUND25), ("round 26", FULL)):
    bare = [r["bare"]["cpu_us_per_write"] for run in runs for r in load(run.split()[1])["results"]
            if r["scenario"]["name"].startswith("fanout-15k") and r.get("bare")]
    print(f"{label}: fanout-15k bare write {min(bare):.2f}–{max(bare):.2f} µs, median {statistics.median(bare):.2f}")
gaps = [r["batch_p99_median_ms"] - r["batch_cpu_floor_ms"] for run in FULL for r in load(run.split()[1])["results"]
        if r["scenario"]["name"].startswith("fanout-15k")]
print(f"round 26: median batch minus its CPU floor, fanout-15k scenarios: {min(gaps):+.1f} to {max(gaps):+.1f} ms")

# The HTTP publish's figures the text derives from this directory's text files.
here = pathlib.Path(__file__).resolve().parent


def per_request(name, marker=""):
    """µs CPU per request of each line of an `http_cost.py` output containing `marker`."""
    return [float(re.search(r"([\d.]+) µs CPU per request", line)[1])
            for line in (here / name).read_text().splitlines() if "µs CPU per request" in line and marker in line]


def profile_groups(name):
    """Per run of an http-cost-profile output: (rate, {group: µs per request})."""
    runs = []
    for line in (here / name).read_text().splitlines():
        if line.startswith("rate "):
            runs.append((int(line.split()[1].rstrip("/s,")), {}))
        elif (m := re.match(r"\s+([\d.]+) µs  (.+)$", line)) and runs:
            runs[-1][1].setdefault(m[2], float(m[1]))  # first listing of a name: its system call or crate
    return runs


for name in ("http-cost-profile.txt", "http-cost-profile-repeat.txt"):
    runs = profile_groups(name)
    cold = [g for rate, g in runs if rate == 100]
    warm = [g for rate, g in runs if rate == 5000]
    print(f"{name}: cold / warm per request, pairing the first run at each rate, then the second")
    for group in ("user space", "do_writev", "__x64_sys_epoll_wait", "kernel", "tokio", "hyper", "libc.so.6", "gateway"):
        ratios = " / ".join(f"{c[group] / w[group]:.1f}" for c, w in zip(cold, warm))
        print(f"  {group}: {' / '.join(str(c[group]) for c in cold)} vs {' / '.join(str(w[group]) for w in warm)} µs: {ratios} x")

early, late = per_request("http-cost-by-rate.txt", "rate 100, CPUs idle between requests: "), per_request("http-cost-late.txt")
print(f"100 per second, unprofiled: {min(early):.1f}–{max(early):.1f} µs, half an hour later {min(late):.1f}–{max(late):.1f}: "
      f"+{100 * (min(late) / max(early) - 1):.0f} to +{100 * (max(late) / min(early) - 1):.0f} %")
unpinned = per_request("http-cost-pinned.txt", "target/release/gateway:")
pinned = per_request("http-cost-pinned.txt", "gw-pinned.sh:")
print("pinned cheaper per round: " + " / ".join(f"{100 * (1 - p / u):.0f} %" for u, p in zip(unpinned, pinned)))

# fanout-15k-small's CPU per frame without ~1 µs of HTTP publishing (100 × ~150 µs ÷ 15,000 frames).
for run in FULL[1:3]:
    r = result(load(run.split()[1]), "fanout-15k-small")
    print(f"{run.split()[0]} fanout-15k-small: {r['cpu_ratio_to_bare']:.2f} x; with 1 µs less per frame "
          f"{(r['cpu_us_per_frame'] - 1) / r['bare']['cpu_us_per_write']:.2f} x")

# wake-speed.txt: each sleep's chunks and chain, the 10 ms rounds against the 0.2 ms rounds of the same run.
for block in (here / "wake-speed.txt").read_text().split("# run ")[1:]:
    rows = {}
    for line in block.splitlines():
        if m := re.match(r"sleep\s+(\d+) us: chunks (\d+) / (\d+) / (\d+) / (\d+) ns; chain ([\d.]+)", line):
            rows.setdefault(int(m[1]), []).append([int(m[i]) for i in range(2, 6)] + [float(m[6])])
    slow_chunks = [a / b - 1 for x, y in zip(rows[10000], rows[200]) for a, b in zip(x[:4], y[:4])]
    chains = [x[4] / y[4] for x, y in zip(rows[10000], rows[200])]
    print(f"wake-speed run {block.split(',')[0]}: chunks after 10 ms at most {100 * max(slow_chunks):.1f} % slower "
          f"(first chunk {', '.join(f'{100 * (x[0] / y[0] - 1):.1f}' for x, y in zip(rows[10000], rows[200]))} %); "
          f"chain {' / '.join(f'{c:.1f}' for c in chains)} x")
