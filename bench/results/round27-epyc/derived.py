# The figures of docs/PERFORMANCE.md's round 27 section, from the runs' JSON and this
# directory's text files:
#   python3 bench/results/round27-epyc/derived.py > bench/results/round27-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import latency_by_batch, per_request, round_figures, run_headers, wake_speed  # noqa: E402

FULL = ["DF 20261127T132812Z", "DG 20261127T133751Z", "DH 20261127T134412Z", "DJ 20261127T135350Z"]
IDLE = "DI 20261127T134722Z"

# The full runs' figures, their headers (system call, bare write, build, pinning, steal),
# slow batches beside the bare write's and with the host's steal, the loopback write
# against round 24's (the same kind of host: CPU family 25 model 17, kernel and
# vulnerabilities lines identical, host.txt), each median batch against its CPU floor,
# and the clients-idle run.
ROUND24 = ["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z", "CS 20261127T083615Z"]
round_figures("with --pin-workers (round 23's code), AMD EPYC of round 24's kind", "round 27", FULL, IDLE,
              [("round 24", ROUND24)])

# latency-500, where each batch's p99 comes from: the default runs, then an A/B of
# `--only latency-500` (L: clients placed by the kernel, P: `--pin-clients`), alternating.
LAT_AB = ["L1 20261127T135645Z", "P1 20261127T135658Z", "L2 20261127T135711Z", "P2 20261127T135724Z",
          "L3 20261127T135736Z", "P3 20261127T135749Z", "L4 20261127T135802Z", "P4 20261127T135815Z"]
latency_by_batch(FULL + LAT_AB)
# The same under `perf record -e cpu-clock -F 2000 -a` (T1, T3 kernel-placed, T2 pinned;
# cpu-by-batch-clients.txt counts their batches whose clients all ran on one CPU).
TRACED = ["T1 20261127T141732Z", "T2 20261127T141747Z", "T3 20261127T142954Z"]
latency_by_batch(TRACED)

# The same A/B at 15,000 connections (`--only fanout-15k`, A: clients placed by the kernel,
# B: `--pin-clients`; pin-clients-ab.txt has each scenario), and every other run's header.
FANOUT_AB = ["A1 20261127T140437Z", "B1 20261127T140642Z", "A2 20261127T140847Z", "B2 20261127T141053Z"]
run_headers([IDLE] + LAT_AB + TRACED + FANOUT_AB)

# What an HTTP publish costs the gateway by rate (http-cost-by-rate.txt, round 25's script),
# and wake-speed.txt (round 26's program): the 10 ms rounds against the 0.2 ms rounds.
here = pathlib.Path(__file__).resolve().parent
for marker in ("rate 100, CPUs idle", "rate 1000,", "rate 5000,", "SCHED_IDLE spinner"):
    v = per_request(here / "http-cost-by-rate.txt", marker)
    print(f"HTTP publish, {marker}: {' / '.join(f'{x:.1f}' for x in v)} µs per request")
wake_speed(here / "wake-speed.txt")
