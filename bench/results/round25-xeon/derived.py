# The figures of docs/PERFORMANCE.md's round 25 section, from the runs' JSON:
#   python3 bench/results/round25-xeon/derived.py > bench/results/round25-xeon/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import clients_idle, report, run_headers, slow_gateway_vs_bare  # noqa: E402

FULL = ["CV 20261127T093712Z", "CW 20261127T094527Z", "CX 20261127T095126Z", "CZ 20261127T102001Z"]
AB = ["A1 20261127T095335Z", "B1 20261127T095542Z", "A2 20261127T095749Z", "B2 20261127T095955Z",
      "A3 20261127T100202Z", "B3 20261127T100410Z"]
CY = "CY 20261127T100844Z"
LAT = ["latency-A/B 20261127T103828Z", "latency-A/B 20261127T103841Z", "latency-A/B 20261127T103854Z",
       "latency-A/B 20261127T103907Z", "latency-A/B 20261127T103919Z", "latency-A/B 20261127T103932Z"]

report("with --pin-workers (round 23's code), Intel Xeon", FULL)

# What one system call and one bare loopback write cost in each run (its header and its
# fanout scenarios' bare writes), the build it measured, whether its gateways were pinned,
# and the host's steal per scenario.
run_headers(FULL + AB + [CY] + LAT)

# Slow batches of the gateway beside slow rounds of the bare write, same runs, same rule.
slow_gateway_vs_bare(FULL)

# CY: the clients under SCHED_IDLE; the median batch's p99 to arrival on the socket.
clients_idle(CY)
