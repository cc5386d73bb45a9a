# The figures of docs/PERFORMANCE.md's round 28 section, from the runs' JSON:
#   python3 bench/results/round28-epyc/derived.py > bench/results/round28-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (ab_medians, latency_by_batch, load, median_batch_minus_floor, report, result,  # noqa: E402
                         round_figures, run_headers)

FULL = ["DK 20261127T150443Z", "DL 20261127T151605Z", "DN 20261127T152345Z", "DO 20261127T152927Z"]
IDLE = "DM 20261127T151802Z"

# The full runs' figures, their headers (system call, bare write, build, pinning, steal),
# slow batches beside the bare write's and with the host's steal, the loopback write
# against rounds 24 and 27 (the same kind of host: host.txt identical to round 27's,
# checked with `diff`), each median batch against its CPU floor, and the clients-idle run.
ROUND24 = ["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z", "CS 20261127T083615Z"]
ROUND27 = ["DF 20261127T132812Z", "DG 20261127T133751Z", "DH 20261127T134412Z", "DJ 20261127T135350Z"]
round_figures("with --pin-workers (round 23's code), AMD EPYC of round 24's kind", "round 28", FULL, IDLE,
              [("round 24", ROUND24), ("round 27", ROUND27)])

# latency-500 before the full runs: an A/B of `--only latency-500` (L: clients placed by
# the kernel, P: `--pin-clients`), alternating, then the full runs' own latency-500.
LAT_AB = ["L1 20261127T145628Z", "P1 20261127T145641Z", "L2 20261127T145654Z", "P2 20261127T145706Z",
          "L3 20261127T145719Z", "P3 20261127T145732Z", "L4 20261127T145745Z", "P4 20261127T145757Z",
          "L5 20261127T145810Z", "P5 20261127T145823Z", "L6 20261127T145836Z", "P6 20261127T145849Z"]
latency_by_batch(LAT_AB + FULL)
run_headers([IDLE] + LAT_AB)

# The A/B's two sides in one line each: the medians of their six runs' read and arrival p99.
ab_medians("latency-500", [("L1–L6", [r for r in LAT_AB if r.startswith("L")]),
                           ("P1–P6", [r for r in LAT_AB if r.startswith("P")])])

# After this round's first gateway change, the log of refused upgrades (build 0470ea5ce200;
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
