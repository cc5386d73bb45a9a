# The figures of docs/PERFORMANCE.md's round 29 section, from the runs' JSON:
#   python3 bench/results/round29-epyc/derived.py > bench/results/round29-epyc/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (latency_by_batch, median_batch_minus_floor, report, round_figures, run_headers,  # noqa: E402
                         result, load, stalled_pairs)

FULL = ["DQ 20261127T165150Z", "DR 20261127T165923Z", "DS 20261127T170608Z", "DU 20261127T171407Z"]
IDLE = "DT 20261127T170824Z"

# The full runs' figures, their headers (system call, bare write, build, pinning, steal),
# slow batches beside the bare write's and with the host's steal, the loopback write
# against rounds 27 and 28 (the same kind of host: host.txt differs from round 28's only
# in the kernel's build, v595 against v669, checked with `diff`), each median batch
# against its CPU floor, and the clients-idle run. Every run is of this round's one build
# (the slow-consumer log line, which no bench scenario triggers: no slow-consumer close in
# any run).
ROUND27 = ["DF 20261127T132812Z", "DG 20261127T133751Z", "DH 20261127T134412Z", "DJ 20261127T135350Z"]
ROUND28 = ["DK 20261127T150443Z", "DL 20261127T151605Z", "DN 20261127T152345Z", "DO 20261127T152927Z"]
round_figures("with --pin-workers (round 23's fan-out), AMD EPYC of round 24's kind", "round 29", FULL, IDLE,
              [("round 27", ROUND27), ("round 28", ROUND28)])

# latency-500 of the full runs: where each run's p99 comes from, batch by batch.
latency_by_batch(FULL)
run_headers([IDLE])

# The stalled-readers scenarios (new this round), `./target/release/bench run --size full
# --only stalled`: three runs with the build of DQ-DU (S1-S3; its frames-sent counter also
# counted the offers a full outbox refused), then three after the counter's fix (S4-S6).
STALLED = ["S1 20261127T172436Z", "S2 20261127T172501Z", "S3 20261127T172527Z",
           "S4 20261127T174147Z", "S5 20261127T174212Z", "S6 20261127T174237Z"]
stalled_pairs(STALLED)
run_headers(STALLED)

# The round's final build (the slow-consumer log, the frames-sent counter's fix, the
# stalled-readers scenarios in the standard set): one more `make bench`, DV.
FINAL = ["DV 20261127T175256Z"]
report("the round's final build, make bench", FINAL)
run_headers(FINAL)
median_batch_minus_floor("DV", FINAL)
latency_by_batch(FINAL)
stalled_pairs(FINAL)

# DV's channels-20x750 read p99 (36.9 ms) against DQ-DU's 8.2-10.4, and three more
# `./target/release/bench run --size full --only channels-20x750` with the final commit's
# build (cdba15039ec6: DV's code with the slow-consumer log call written without a local).
for run in FINAL + ["C1 20261127T175809Z", "C2 20261127T175828Z", "C3 20261127T175847Z"]:
    name, stamp = run.split()
    d = load(stamp)
    r = result(d, "channels-20x750")
    slow_p99s = [b[1] for b in r["per_batch_excess_ms"] if b[1] >= 20]
    slow_range = f" ({min(slow_p99s):.1f}-{max(slow_p99s):.1f} ms)" if slow_p99s else ""
    print(f"{name} {stamp}: build {d['gateway_build_id'][:12]}, channels-20x750 read p99 {r['excess_p99_ms']:.1f} ms, "
          f"median batch {r['batch_p99_median_ms']:.1f} ms, arrival p99 {r['arrival_ms'][2]:.1f} ms, "
          f"batches with a p99 of 20 ms or more {len(slow_p99s)} of {len(r['per_batch_excess_ms'])}{slow_range}, "
          f"host steal {r['steal_ms']:.0f} ms")
