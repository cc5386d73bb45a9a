# The figures of docs/PERFORMANCE.md's round 24 table, from the counted runs' JSON:
#   python3 bench/results/round24-epyc/derived.py > bench/results/round24-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import load, report  # noqa: E402

report("with --pin-workers (round 23's code)", ["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z"])

# CQ: the clients under SCHED_IDLE; the median batch's p99 to arrival on the socket.
cq = load("20261127T075207Z")
print("== CQ 20261127T075207Z (--only fanout-15k --clients idle, pinned): median batch to 99 % arrived "
      + " / ".join(f"{r['arrival_batch_p99_median_ms']:.1f}" for r in cq["results"]) + " ms")
