# The figures of docs/PERFORMANCE.md's round 26 section, from the runs' JSON:
#   python3 bench/results/round26-xeon/derived.py > bench/results/round26-xeon/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import clients_idle, report, run_headers, slow_batches_with_steal, slow_gateway_vs_bare  # noqa: E402

FULL = ["DA 20261127T112526Z", "DB 20261127T113651Z", "DC 20261127T114353Z"]
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
