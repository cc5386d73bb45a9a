# The figures of docs/PERFORMANCE.md's round 28 section, from the runs' JSON:
#   python3 bench/results/round28-epyc/derived.py > bench/results/round28-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (bare_write_by_round, clients_idle, latency_by_batch, median_batch_minus_floor,  # noqa: E402
                         report, run_headers, slow_batches_with_steal, slow_gateway_vs_bare)

FULL = ["DK 20261127T150443Z", "DL 20261127T151605Z", "DN 20261127T152345Z", "DO 20261127T152927Z"]
IDLE = "DM 20261127T151802Z"

report("with --pin-workers (round 23's code), AMD EPYC of round 24's kind", FULL)

# What one system call and one bare loopback write cost in each run, the build it
# measured, whether its gateways were pinned, and the host's steal per scenario.
run_headers(FULL)

# Slow batches of the gateway beside slow rounds of the bare write, same runs, same rule,
# and each slow batch with the host's steal during its fan-out.
slow_gateway_vs_bare(FULL)
slow_batches_with_steal(FULL)

# The loopback write against rounds 24 and 27 (the same kind of host: host.txt identical
# to round 27's, checked with `diff`), and each median batch against its CPU floor.
ROUND24 = ["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z", "CS 20261127T083615Z"]
ROUND27 = ["DF 20261127T132812Z", "DG 20261127T133751Z", "DH 20261127T134412Z", "DJ 20261127T135350Z"]
bare_write_by_round([("round 24", ROUND24), ("round 27", ROUND27), ("round 28", FULL)])
median_batch_minus_floor("round 28", FULL)
clients_idle(IDLE)

# latency-500 before the full runs: an A/B of `--only latency-500` (L: clients placed by
# the kernel, P: `--pin-clients`), alternating, then the full runs' own latency-500.
LAT_AB = ["L1 20261127T145628Z", "P1 20261127T145641Z", "L2 20261127T145654Z", "P2 20261127T145706Z",
          "L3 20261127T145719Z", "P3 20261127T145732Z", "L4 20261127T145745Z", "P4 20261127T145757Z",
          "L5 20261127T145810Z", "P5 20261127T145823Z", "L6 20261127T145836Z", "P6 20261127T145849Z"]
latency_by_batch(LAT_AB + FULL)
run_headers([IDLE] + LAT_AB)

# The A/B's two sides in one line each: the medians of their six runs' read and arrival p99.
import statistics  # noqa: E402

from run_figures import load, result  # noqa: E402

for side in ("L", "P"):
    runs = [r.split()[1] for r in LAT_AB if r.startswith(side)]
    res = [result(load(s), "latency-500") for s in runs]
    read = statistics.median(r["excess_p99_ms"] for r in res)
    arrival = statistics.median(r["arrival_ms"][2] for r in res)
    print(f"latency-500 A/B, {side}1–{side}6: median read p99 {read:.2f} ms, median arrival p99 {arrival:.2f} ms")

# After this round's one gateway change, the log of refused upgrades (build 0470ea5ce200;
# the upgrade path computes the client's address before the Origin check, nothing else
# changes for an accepted connection): three `bench run --size full --only idle`.
AFTER = ["I1 20261127T154313Z", "I2 20261127T154333Z", "I3 20261127T154350Z"]
for run in AFTER:
    name, stamp = run.split()
    d = load(stamp)
    r = result(d, "idle-15k")
    print(f"{name} {stamp}: build {d['gateway_build_id'][:12]}, system call {d['syscall_ns']:.0f} ns, "
          f"accepted 15,000 in {r['connect_s']:.2f} s, RSS {r['rss_idle_kib_per_conn']:.2f} KiB per idle connection")

# The final build of the round (both gateway changes; the open-file limit only acts at
# start): one more `bench run --size full`.
FINAL = ["DP 20261127T155843Z"]
report("the round's final build", FINAL)
run_headers(FINAL)
median_batch_minus_floor("DP", FINAL)
latency_by_batch(FINAL)
