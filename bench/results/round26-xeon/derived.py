# The figures of docs/PERFORMANCE.md's round 26 section, from the runs' JSON:
#   python3 bench/results/round26-xeon/derived.py > bench/results/round26-xeon/derived.txt
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import clients_idle, load, report, run_headers, slow_batches_with_steal, slow_gateway_vs_bare  # noqa: E402

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
