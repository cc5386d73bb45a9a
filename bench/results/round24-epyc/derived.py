# The figures of docs/PERFORMANCE.md's round 24 table, from the counted runs' JSON:
#   python3 bench/results/round24-epyc/derived.py > bench/results/round24-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import clients_idle, load, report, run_headers, slow_gateway_vs_bare  # noqa: E402

report("with --pin-workers (round 23's code)", ["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z"])

# CS, CT, CU: the bench with the host's steal per scenario and per batch (92b4a25), the same gateway.
report("with the steal figure", ["CS 20261127T083615Z"])
for run in ["CS 20261127T083615Z", "CT 20261127T083821Z", "CU 20261127T084027Z"]:
    name, stamp = run.split()
    d = load(stamp)
    print(f"{name} {stamp}: host steal per scenario (ms) "
          + ", ".join(f"{r['scenario']['name']} {r['steal_ms']:.0f}" for r in d["results"] if r["published"]))
    for r in d["results"]:
        if r.get("per_batch_steal_ms") and r["scenario"]["name"].startswith("fanout-15k"):
            print(f"  {r['scenario']['name']}: batches' p99 " + ", ".join(f"{b[1]:.0f}" for b in r["per_batch_excess_ms"])
                  + "; steal in each fan-out " + ", ".join(f"{v:.0f}" for v in r["per_batch_steal_ms"]))

# Slow rounds of the bare write beside the gateway's slow batches, same runs, same rule.
slow_gateway_vs_bare(["CO 20261127T072442Z", "CP 20261127T075013Z", "CR 20261127T075758Z", "CS 20261127T083615Z"])

# What one system call cost in each run of the round (its header), the build it measured.
run_headers(["A/B 20261127T072936Z", "A/B 20261127T073142Z", "A/B 20261127T073350Z", "A/B 20261127T073559Z",
             "CQ 20261127T075207Z", "traced 20261127T080107Z", "latency-A/B 20261127T081032Z",
             "latency-A/B 20261127T081044Z", "latency-A/B 20261127T081057Z", "latency-A/B 20261127T081110Z",
             "latency-A/B 20261127T081123Z", "latency-A/B 20261127T081136Z", "profiled 20261127T082801Z",
             "CS 20261127T083615Z", "CT 20261127T083821Z", "CU 20261127T084027Z"])

# CQ: the clients under SCHED_IDLE; the median batch's p99 to arrival on the socket.
clients_idle("CQ 20261127T075207Z")
