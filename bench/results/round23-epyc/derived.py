# The figures of docs/PERFORMANCE.md's round 23 tables, from the counted runs' JSON:
#   python3 bench/results/round23-epyc/derived.py > bench/results/round23-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import load, report  # noqa: E402

UNPINNED = ["CH 20261127T051503Z", "CI 20261127T052342Z", "CJ 20261127T053738Z"]
PINNED = ["CK 20261127T062053Z", "CL 20261127T062720Z", "CM 20261127T063305Z"]

report("without --pin-workers (round 19's code)", UNPINNED)
report("with --pin-workers", PINNED)


# CN: the clients under SCHED_IDLE; the median batch's p99 to arrival on the socket.
cn = load("20261127T063457Z")
print("== CN 20261127T063457Z (--only fanout-15k --clients idle, pinned): median batch to 99 % arrived "
      + " / ".join(f"{r['arrival_batch_p99_median_ms']:.1f}" for r in cn["results"]) + " ms")
