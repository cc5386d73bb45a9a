# The figures of docs/PERFORMANCE.md's round 32 section, from the runs' JSON:
#   python3 bench/results/round32-epyc/derived.py > bench/results/round32-epyc/derived.txt
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (bare_write_by_round, per_request, cpu_shares, criterion_against, criterion_medians,  # noqa: E402
                         deployment_estimate, excess_over_bare, http_publish_per_frame, load, report, result,
                         round_figures, run_headers, stalled_pairs)

# EK is `make bench` of round 31's last commit (8e40d62); EL, EM and EN are `bench run
# --size full` of the build with round 32's gateway fixes (a far token expiry, the API
# key's scheme), neither on the fan-out's path.
FULL = ["EK 20261127T222950Z", "EL 20261127T224246Z", "EM 20261127T224849Z", "EN 20261127T225500Z"]
IDLE = "EO 20261127T225732Z"

# The full runs' figures, their headers, slow batches beside the bare write's and with the
# host's steal, the loopback write against round 23's pinned runs (the same kind of AMD
# EPYC, CPU family 26 model 2, kernel build v657: host.txt's first five lines are round
# 23's, checked with `diff`), each median batch against its CPU floor, and the clients-idle run.
ROUND23 = ["CK 20261127T062053Z", "CL 20261127T062720Z", "CM 20261127T063305Z"]
# Then latency-500 of the full runs batch by batch (where each run's p99 comes from), the
# clients-idle run's header, and the stalled-readers pair of each full run.
round_figures("with --pin-workers (round 23's fan-out), AMD EPYC of round 23's kind", "round 32", FULL,
              IDLE, [("round 23, pinned", ROUND23)], stalled=True)

# Where a fanout-15k batch's CPU floor comes from: the gateway's and the clients' CPU per
# batch (ms), and what each share alone would take over the two cores.
cpu_shares(FULL)

# The slowest batch of each fanout-15k scenario run, against its run's median batch: the
# misses of the p99 here are one or two slow batches, not the median.
for run in FULL:
    name, stamp = run.split()
    for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis"):
        r = result(load(stamp), sc)
        p99s = sorted(b[2] for b in r["per_batch_excess_ms"])
        print(f"{name} {sc}: p99 {r['excess_p99_ms']:.1f} ms; per-batch p99s, slowest two {p99s[-1]:.1f} and "
              f"{p99s[-2]:.1f}, median batch {r['batch_p99_median_ms']:.1f}; batches over 100 ms: "
              f"{sum(p > 100 for p in p99s)} of {len(p99s)}")

# The gateway's CPU per frame over the bare write, µs, in each fanout-15k scenario.
excess_over_bare("EK-EN", FULL)

# Criterion's median estimates in EK against round 23's CI and CK (this host's kind) and
# round 31's EB (an EPYC of family 25), and their ratio.
here = pathlib.Path(__file__).resolve().parent
ek = criterion_against("EK", here / "criterion-EK.txt", [
    ("round 23's CI", here.parent / "round23-epyc" / "criterion-CI.txt"),
    ("round 23's CK", here.parent / "round23-epyc" / "criterion-CK.txt"),
    ("round 31's EB", here.parent / "round31-epyc" / "criterion-EB.txt")])

# What a deployment can expect: a batch's fan-out to 15,000 connections over two cores at
# the fanout-15k scenarios' CPU per frame (EK-EN), the clients elsewhere.
deployment_estimate(FULL)
bare_write_by_round([("round 32, the fixes' build", FULL[1:])])

# The HTTP publish on this host (http-cost-by-rate.txt, round 25's script): per request
# and per frame of a 15,000-connection batch at 100 a second.
http_publish_per_frame(here / "http-cost-by-rate.txt")
# What keeping both CPUs from idling (a SCHED_IDLE spinner on each) leaves of that cost,
# here and on round 31's EPYC (the same script's output there).
for label, path in [("round 32", here / "http-cost-by-rate.txt"),
                    ("round 31", here.parent / "round31-epyc" / "http-cost-by-rate.txt")]:
    idle = per_request(path, "rate 100, CPUs idle between requests: ")
    busy = per_request(path, "rate 100, a SCHED_IDLE spinner on each CPU: ")
    print(f"{label}: at 100 a second, CPUs kept busy {' / '.join(f'{b:.1f}' for b in busy)} µs against idle "
          f"{' / '.join(f'{i:.1f}' for i in idle)} µs: {min(busy) / max(idle):.2f}-{max(busy) / min(idle):.2f} of it")

# `make bench-quick` (bench-quick-time.txt): its figures as the docs quote them.
quick = json.loads((here.parent / "20261127T230010Z-quick.json").read_text())
q = {r["scenario"]["name"]: r for r in quick["results"]}
print(f"quick 20261127T230010Z: fanout-3k {q['fanout-3k']['cpu_us_per_frame']:.2f} µs per frame, "
      f"{q['fanout-3k']['cpu_ratio_to_bare']:.2f} x, read p99 {q['fanout-3k']['excess_p99_ms']:.1f} ms; "
      f"latency-500 read {q['latency-500']['excess_p99_ms']:.1f}, arrival {q['latency-500']['arrival_ms'][2]:.1f} ms; "
      f"RSS {q['idle-3k']['rss_idle_kib_per_conn']:.2f} KiB per idle connection; Socket.IO "
      f"{q['compare-pushfleet']['messages_per_cpu_s'] / q['compare-socketio']['messages_per_cpu_s']:.1f} x")

# The round's later builds (commit cdd5a68: the 405s' Allow header, the 426 for another
# WebSocket version, a second signal ending a drain; none on the fan-out's path): EP,
# `make bench`, and criterion's medians there against EK's; then EQ, `bench run --size
# full` of commit 7caf60e (the two static-file routes share one builder), and ER, of the
# round's last commit (4b0af59: a command id's and "*"'s refusals say what is wanted,
# pushctl's secrets, the browser client's refused channels).
LAST = ["EP 20261127T231747Z", "EQ 20261127T232656Z", "ER 20261127T234817Z"]
report("the round's later builds, make bench and bench run --size full", LAST)
run_headers(LAST)
stalled_pairs(LAST)
ep = criterion_medians(here / "criterion-EP.txt")
for name, us in ep.items():
    print(f"criterion {name}: EP {us:.2f} µs, EK {ek[name]:.2f} µs, EP {us / ek[name]:.2f} x")

# The fanout-15k scenarios' CPU per frame and bare write, µs, here (EK-EN) and in round
# 23's pinned runs on this kind of host (the criterion bullet's comparison).
for label, runs in [("round 32, EK-EN", FULL), ("round 23, pinned", ROUND23)]:
    rows = [result(load(run.split()[1]), sc) for run in runs
            for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis")]
    cpu = [r["cpu_us_per_frame"] for r in rows]
    bare = [r["bare"]["cpu_us_per_write"] for r in rows]
    print(f"{label}: CPU per frame {min(cpu):.2f}-{max(cpu):.2f} µs, bare write {min(bare):.2f}-{max(bare):.2f} µs")
