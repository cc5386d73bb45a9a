# The figures of docs/PERFORMANCE.md's round 30 section, from the runs' JSON:
#   python3 bench/results/round30-xeon/derived.py > bench/results/round30-xeon/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (criterion_medians, deployment_estimate, excess_over_bare, http_publish_per_frame,  # noqa: E402
                         load, result, round_figures)

FULL = ["DW 20261127T190151Z", "DX 20261127T191809Z", "DY 20261127T192428Z", "DZ 20261127T193039Z"]
IDLE = "EA 20261127T193232Z"

# The full runs' figures, their headers (system call, bare write, build, pinning, steal),
# slow batches beside the bare write's and with the host's steal, the loopback write
# against rounds 25 and 26 (the same kind of Intel Xeon, CPU family 6 model 207; host.txt
# differs from round 26's in the kernel's build and its mitigations, checked with `diff`),
# each median batch against its CPU floor, and the clients-idle run. Every run is of this
# round's one build (a closing connection leaves the fan-out as its close starts).
ROUND25 = ["CV 20261127T093712Z", "CW 20261127T094527Z", "CX 20261127T095126Z", "CZ 20261127T102001Z"]
ROUND26 = ["DA 20261127T112526Z", "DB 20261127T113651Z", "DC 20261127T114353Z", "DE 20261127T121127Z"]
# Then latency-500 of the full runs batch by batch (where each run's p99 comes from), the
# clients-idle run's header, and the stalled-readers pair of each full run.
round_figures("with --pin-workers (round 23's fan-out), Intel Xeon of rounds 25 and 26's kind", "round 30", FULL,
              IDLE, [("round 25", ROUND25), ("round 26", ROUND26)], stalled=True)

# The host's steal during each full run's latency-500 (DZ's miss came with the host taking
# the CPUs away).
for run in FULL:
    name, stamp = run.split()
    r = result(load(stamp), "latency-500")
    print(f"{name} {stamp} latency-500: read p99 {r['excess_p99_ms']:.1f} ms, arrival p99 {r['arrival_ms'][2]:.1f} ms, "
          f"host steal {r['steal_ms']:.0f} ms")

# The gateway's CPU per frame over the bare write, µs, in each fanout-15k scenario of the
# full runs, beside what the HTTP publishes cost per frame at 100 a second (their CPU per
# request at rate 100 in http-cost-by-rate.txt, written by round 25's script on this host,
# over 15,000 frames a second).
excess_over_bare("DW-DZ", FULL)
here = pathlib.Path(__file__).resolve().parent
http_publish_per_frame(here / "http-cost-by-rate.txt")

# Criterion's median estimates (the middle of each `time:` line) in DW against round 29's
# DQ, and their ratio.
dw = criterion_medians(here / "criterion-DW.txt")
dq = criterion_medians(here.parent / "round29-epyc" / "criterion-DQ.txt")
for name, us in dw.items():
    print(f"criterion {name}: DW {us:.2f} µs, round 29's DQ {dq[name]:.2f} µs, {us / dq[name]:.2f} x")

# What a deployment can expect: a batch's fan-out to 15,000 connections over two cores at
# the fanout-15k scenarios' CPU per frame (DW-DZ), the clients elsewhere.
deployment_estimate(FULL)
