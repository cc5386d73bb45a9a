# Figures of docs/PERFORMANCE.md's round 22 derived from the five counted runs' JSON:
#   python3 bench/results/round22-xeon/derived.py > bench/results/round22-xeon/derived.txt
import json, pathlib
runs = ["CB 20261127T035446Z", "CC 20261127T040330Z", "CD 20261127T041000Z", "CE 20261127T041645Z", "CG 20261127T043125Z"]
here = pathlib.Path(__file__).resolve().parent.parent
slow_g = slow_b = batches = rounds = 0
print("run scenario: gateway CPU per frame - bare write (µs); median batch - CPU floor (ms); batches with a p99 over 100 ms: index, p50, p99, first 1 % (ms)")
for run in runs:
    name, stamp = run.split()
    d = json.loads((here / f"{stamp}-full.json").read_text())
    for r in d["results"]:
        n = r["scenario"]["name"]
        if not n.startswith("fanout-15k"):
            continue
        gb = [x[1] for x in r["per_batch_excess_ms"]]
        bb = [x[1] for x in r["bare"]["per_round_ms"]]
        mg, mb = sorted(gb)[len(gb) // 2], sorted(bb)[len(bb) // 2]
        over = [(i, r["per_batch_excess_ms"][i][0], x, r["per_batch_arrival_start_ms"][i]) for i, x in enumerate(gb) if x > 100]
        slow = [i for i, x in enumerate(gb) if x > 1.2 * mg]
        slow_bare = [i for i, x in enumerate(bb) if x > 1.2 * mb]
        slow_g += len(slow); slow_b += len(slow_bare); batches += len(gb); rounds += len(bb)
        others = [x[0] for x, p99 in zip(r["per_batch_excess_ms"], gb) if p99 <= 100]
        print(f"{name} {n}: {r['cpu_us_per_frame'] - r['bare']['cpu_us_per_write']:.2f}; "
              f"{r['batch_p99_median_ms'] - r['batch_cpu_floor_ms']:+.1f}; "
              + ", ".join(f"#{i} {p50:.0f} / {p99:.0f} / {s:.1f}" for i, p50, p99, s in over)
              + f"; batches over 1.2 x the median batch: {slow}"
              + f"; median read of the batches at or under 100 ms {min(others):.0f}-{max(others):.0f}"
              + f"; bare write's slowest round {max(bb):.0f}, rounds over 1.2 x its median: {slow_bare}")
print(f"gateway batches over 1.2 x their median: {slow_g} of {batches}; bare rounds: {slow_b} of {rounds}")
