# Round 23's A/B of --pin-workers (docs/PERFORMANCE.md, round 23): fanout-15k, -small and
# -redis (or latency-500), alternating runs without (A) and with (B) pinned workers (the
# first A/B set PUSHFLEET_PIN_WORKERS=1 in the gateways' environment for B, before the bench
# pinned by default; now `bench run --unpinned` is A). Each argument is LABEL=PATH-TO-RUN-JSON:
#   python3 bench/results/round23-epyc/pin-ab.py A1=... B1=... > pin-ab.txt
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
import run_figures  # noqa: E402

print("run scenario: p99 read (ms); median batch; batches over 1.2 x the median batch (their p99s); "
      "gateway CPU per frame / bare write; gateway threads' CPU over the publish phase")
totals = {}
for arg in sys.argv[1:]:
    label, path = arg.split("=", 1)
    d = json.load(open(path))
    for r in d["results"]:
        name = r["scenario"]["name"]
        if name == "latency-500":
            print(f"{label} {name}: read p99 {r['excess_p99_ms']:.2f} ms, to arrival {r['arrival_ms'][2]:.2f}; "
                  f"CPU {r['cpu_us_per_frame']:.2f} µs per frame")
            continue
        if not name.startswith("fanout-15k"):
            continue
        p99s = [b[1] for b in r["per_batch_excess_ms"]]
        slow = [p99s[i] for i in run_figures.slow(p99s)]
        t = totals.setdefault((label[0], name), {"p99": [], "median": [], "slow": 0, "batches": 0, "ratio": []})
        t["p99"].append(r["excess_p99_ms"])
        t["median"].append(r["batch_p99_median_ms"])
        t["slow"] += len(slow)
        t["batches"] += len(p99s)
        t["ratio"].append(r["cpu_ratio_to_bare"])
        print(f"{label} {name}: {r['excess_p99_ms']:.1f}; {r['batch_p99_median_ms']:.1f}; "
              f"{len(slow)} ({', '.join(f'{p:.0f}' for p in slow) or '-'}); "
              f"{r['cpu_us_per_frame']:.2f} / {r['bare']['cpu_us_per_write']:.2f} = {r['cpu_ratio_to_bare']:.2f}; "
              f"{r['gateway_cpu_s']:.2f} s")
print()
for (arm, name), t in sorted(totals.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"{arm} {name}: p99 {' / '.join(f'{x:.1f}' for x in t['p99'])} ms (median {statistics.median(t['p99']):.1f}); "
          f"median batch {' / '.join(f'{x:.1f}' for x in t['median'])}; slow batches {t['slow']} of {t['batches']}; "
          f"CPU ratio {' / '.join(f'{x:.2f}' for x in t['ratio'])}")
