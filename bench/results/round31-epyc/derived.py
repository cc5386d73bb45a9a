# The figures of docs/PERFORMANCE.md's round 31 section, from the runs' JSON:
#   python3 bench/results/round31-epyc/derived.py > bench/results/round31-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (bare_write_by_round, cpu_shares, criterion_against, deployment_estimate,  # noqa: E402
                         excess_over_bare, http_publish_per_frame, load, median_batch_minus_floor, report,
                         result, round_figures, run_headers, stalled_pairs)

FULL = ["EB 20261127T202335Z", "EC 20261127T203621Z", "ED 20261127T204231Z", "EE 20261127T204840Z"]
IDLE = "EF 20261127T205034Z"

# The full runs' figures, their headers (system call, bare write, build, pinning, steal),
# slow batches beside the bare write's and with the host's steal, the loopback write
# against rounds 28 and 29 (the same kind of AMD EPYC, CPU family 25 model 17; host.txt
# is round 29's but for its first line, checked with `diff`), each median batch against
# its CPU floor, and the clients-idle run. Every run is of this round's one build, the code
# of round 30's last commit (d603326).
ROUND28 = ["DK 20261127T150443Z", "DL 20261127T151605Z", "DN 20261127T152345Z", "DO 20261127T152927Z"]
ROUND29 = ["DQ 20261127T165150Z", "DR 20261127T165923Z", "DS 20261127T170608Z", "DU 20261127T171407Z"]
# Then latency-500 of the full runs batch by batch (where each run's p99 comes from), the
# clients-idle run's header, and the stalled-readers pair of each full run.
round_figures("with --pin-workers (round 23's fan-out), AMD EPYC of rounds 27 to 29's kind", "round 31", FULL,
              IDLE, [("round 28", ROUND28), ("round 29", ROUND29)], stalled=True)

# Where a fanout-15k batch's CPU floor comes from: the gateway's and the clients' CPU per
# batch (ms), and what each share alone would take over the two cores.
cpu_shares(FULL, floor_gap=True)

# The gateway's CPU per frame over the bare write, µs, in each fanout-15k scenario of the
# full runs, beside what the HTTP publishes cost per frame at 100 a second (their CPU per
# request at rate 100 in http-cost-by-rate.txt, written by round 25's script on this host,
# over 15,000 frames a second).
excess_over_bare("EB-EE", FULL)
here = pathlib.Path(__file__).resolve().parent
http_publish_per_frame(here / "http-cost-by-rate.txt")

# Criterion's median estimates in EB against round 29's DQ and DV (this host's kind) and
# round 30's DW (a Xeon), and their ratio.
eb = criterion_against("EB", here / "criterion-EB.txt", [
    ("round 29's DQ", here.parent / "round29-epyc" / "criterion-DQ.txt"),
    ("round 29's DV", here.parent / "round29-epyc" / "criterion-DV.txt"),
    ("round 30's DW", here.parent / "round30-xeon" / "criterion-DW.txt")])

# What a deployment can expect: a batch's fan-out to 15,000 connections over two cores at
# the fanout-15k scenarios' CPU per frame (EB-EE), the clients elsewhere.
deployment_estimate(FULL)

# The publish-body build (a publish body is read from a JSON object only; the HTTP
# publish path parses the same objects the same way): three more full runs, EG, EH and EI.
FINAL = ["EG 20261127T210801Z", "EH 20261127T211457Z", "EI 20261127T212102Z"]
LAST = ["EJ 20261127T213552Z"]  # after the client-command rule (below)
report("the publish-body build, bench run --size full", FINAL)
run_headers(FINAL)
stalled_pairs(FINAL)

# `make bench-quick` (bench-quick-time.txt): its figures as the docs quote them.
quick = __import__("json").loads((here.parent / "20261127T205325Z-quick.json").read_text())
q = {r["scenario"]["name"]: r for r in quick["results"]}
print(f"quick 20261127T205325Z: fanout-3k {q['fanout-3k']['cpu_us_per_frame']:.2f} µs per frame, "
      f"{q['fanout-3k']['cpu_ratio_to_bare']:.2f} x, read p99 {q['fanout-3k']['excess_p99_ms']:.1f} ms; "
      f"latency-500 read {q['latency-500']['excess_p99_ms']:.1f}, arrival {q['latency-500']['arrival_ms'][2]:.1f} ms; "
      f"RSS {q['idle-3k']['rss_idle_kib_per_conn']:.2f} KiB per idle connection; Socket.IO "
      f"{q['compare-pushfleet']['messages_per_cpu_s'] / q['compare-socketio']['messages_per_cpu_s']:.1f} x")
median_batch_minus_floor("the publish-body build", FINAL)
bare_write_by_round([("round 31, the publish-body build", FINAL), ("round 31, all eight full runs", FULL + FINAL + LAST)])
for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis"):
    print(f"the publish-body build, {sc}: CPU per frame " + " / ".join(
        f"{result(load(run.split()[1]), sc)['cpu_ratio_to_bare']:.2f}" for run in FINAL) + " x the bare write")

# The client-command rule (a command is read from an object or map only), after EG-EI:
# one more full run of that build, EJ.
report("the round's last build, bench run --size full", LAST)
run_headers(LAST)
stalled_pairs(LAST)
