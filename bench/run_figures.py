"""Each counted run's figures, as the rounds' `derived.py` print them for docs/PERFORMANCE.md:
per run its system call, build, idle RSS and accept time, the three fanout-15k scenarios
(CPU per frame against the bare write, p99, median batch, CPU floors, slow batches),
latency-500, the peer comparison, the fleet and channel scenarios, deliveries, and at the
end the batches over 1.2 x their scenario run's median batch.

  import run_figures; run_figures.report("label", ["CK 20261127T062053Z", ...])
"""
import json
import pathlib
import re
import statistics

here = pathlib.Path(__file__).resolve().parent / "results"


def load(stamp):
    return json.loads((here / f"{stamp}-full.json").read_text())


def slow(values):
    """Indices of the values over 1.2 x their median: the docs' rule for a slow batch (or a
    slow round of the bare write)."""
    med = statistics.median(values)
    return [i for i, v in enumerate(values) if v > 1.2 * med]


def result(d, name):
    return next((r for r in d["results"] if r["scenario"]["name"] == name), None)


def report(label, runs):
    print(f"== {label}: {', '.join(runs)}")
    slow_count = batches = 0
    for run in runs:
        name, stamp = run.split()
        path = here / f"{stamp}-full.json"
        if not path.exists():
            print(f"{name}: {stamp} missing")
            continue
        d = load(stamp)
        idle, lat = result(d, "idle-15k"), result(d, "latency-500")
        print(f"{name} {stamp}: system call {d['syscall_ns']:.0f} ns; build {d.get('gateway_build_id', '')[:12]}")
        print(f"  idle-15k RSS {idle['rss_idle_kib_per_conn']:.2f} KiB, accept {idle['connect_s']:.2f} s")
        for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis"):
            r = result(d, sc)
            p99s = [b[1] for b in r["per_batch_excess_ms"]]
            s = [round(p99s[i]) for i in slow(p99s)]
            slow_count += len(s)
            batches += len(p99s)
            print(f"  {sc}: CPU {r['cpu_us_per_frame']:.2f} vs {r['bare']['cpu_us_per_write']:.2f} = {r['cpu_ratio_to_bare']:.2f}; "
                  f"read p99 {r['excess_p99_ms']:.1f}, median batch {r['batch_p99_median_ms']:.1f}, floor {r['batch_cpu_floor_ms']:.1f}, "
                  f"without the gateway's user CPU {r['batch_floor_without_gateway_code_ms']:.1f}; slow batches {s}")
        print(f"  latency-500 read p99 {lat['excess_p99_ms']:.1f}, arrival p99 {lat['arrival_ms'][2]:.1f}")
        pf, sio, ws = (result(d, n) for n in ("compare-pushfleet", "compare-socketio", "compare-nodews"))
        print(f"  compare: {pf['messages_per_cpu_s'] / sio['messages_per_cpu_s']:.1f} x Socket.IO, "
              f"{pf['messages_per_cpu_s'] / ws['messages_per_cpu_s']:.1f} x Node ws")
        f, c = result(d, "fleet-3x5k"), result(d, "channels-20x750")
        print(f"  fleet-3x5k CPU {f['cpu_us_per_frame']:.2f}, read p99 {f['excess_p99_ms']:.1f}; "
              f"channels-20x750 CPU {c['cpu_us_per_frame']:.2f}, read p99 {c['excess_p99_ms']:.1f}")
        pushfleet = [r for r in d["results"] if r["scenario"].get("server", "pushfleet") == "pushfleet"]
        print(f"  Pushfleet scenarios: every message delivered {all(r['messages_delivered'] == r['messages_expected'] for r in pushfleet)}, "
              f"slow-consumer closes {sum(r['slow_consumer_closes'] for r in pushfleet):.0f}, frames queued {sum(r['frames_queued'] for r in pushfleet):.0f}, "
              f"serializations per batch {sorted({round(r['serializations_per_batch'], 2) for r in pushfleet if r['batches'] > 0})}")
        if idle.get("idle"):
            print(f"  idle: {json.dumps(idle['idle'])[:200]}")
    print(f"  batches over 1.2 x their scenario run's median batch: {slow_count} of {batches}")


def slow_gateway_vs_bare(runs):
    """Over the fanout-15k scenarios of `runs` ("NAME STAMP" each): the gateway's batches
    and the bare write's rounds to the same readers over 1.2 x their scenario run's median,
    by the same rule, printed as one line."""
    slow_gw = slow_bare = batches = rounds = 0
    for run in runs:
        for r in load(run.split()[1])["results"]:
            if r["scenario"]["name"].startswith("fanout-15k") and r.get("bare"):
                g = [b[1] for b in r["per_batch_excess_ms"]]
                w = [b[1] for b in r["bare"]["per_round_ms"]]
                slow_gw += len(slow(g))
                slow_bare += len(slow(w))
                batches, rounds = batches + len(g), rounds + len(w)
    print(f"== {', '.join(r.split()[0] for r in runs)}: over 1.2 x their scenario run's median: gateway batches "
          f"{slow_gw} of {batches}, bare-write rounds {slow_bare} of {rounds}")


def run_headers(runs):
    """Per run of `runs` ("NAME STAMP" each): its system call (the header's), the bare
    write's cost over its scenarios, the gateway build, whether its gateways were pinned,
    and the host's steal per scenario with the scenario that had the most (runs from
    before the bench read steal have none)."""
    for run in runs:
        name, stamp = run.split()
        d = load(stamp)
        bare = [r["bare"]["cpu_us_per_write"] for r in d["results"] if r.get("bare")]
        write = f"bare write {min(bare):.2f}–{max(bare):.2f} µs" if bare else "no bare write"
        pinned = sorted({r["scenario"].get("pin_workers", False) for r in d["results"]})
        line = (f"{name} {stamp}: system call {d['syscall_ns']:.0f} ns, {write}, "
                f"build {d['gateway_build_id'][:12]}, pinned {pinned}")
        if all("steal_ms" in r for r in d["results"]):
            most = max(d["results"], key=lambda r: r["steal_ms"])
            line += (f", host steal per scenario {min(r['steal_ms'] for r in d['results']):.0f}–"
                     f"{most['steal_ms']:.0f} ms (most in {most['scenario']['name']})")
        print(line)


def clients_idle(run):
    """A `--only fanout-15k --clients idle` run: each scenario's median batch's p99 to
    arrival on the socket."""
    name, stamp = run.split()
    d = load(stamp)
    print(f"== {name} {stamp} (--only fanout-15k --clients idle, pinned): median batch to 99 % arrived "
          + " / ".join(f"{r['arrival_batch_p99_median_ms']:.1f}" for r in d["results"]) + " ms")


def slow_batches_with_steal(runs):
    """Per run of `runs` ("NAME STAMP" each): each fanout-15k scenario's batches over 1.2 x
    its median batch, with the host's steal during each one's fan-out (runs that record
    steal per batch), to tell a batch the host slowed from one the machine did."""
    for run in runs:
        name, stamp = run.split()
        for r in load(stamp)["results"]:
            if not r["scenario"]["name"].startswith("fanout-15k"):
                continue
            p99s = [b[1] for b in r["per_batch_excess_ms"]]
            steal = r.get("per_batch_steal_ms") or [None] * len(p99s)
            med = statistics.median(p99s)
            listed = [f"#{i + 1} {p99s[i]:.0f} ms" + (f" (steal {steal[i]:.0f} ms)" if steal[i] is not None else "")
                      for i in slow(p99s)]
            if listed:
                print(f"{name} {r['scenario']['name']}: median batch {med:.1f} ms; slow: {', '.join(listed)}")


def bare_write_by_round(rounds):
    """Per round of `rounds` ((label, ["NAME STAMP", ...]) each): the bare write of the
    fanout-15k scenarios of its runs, lowest, highest and median, one line each."""
    for label, runs in rounds:
        bare = [r["bare"]["cpu_us_per_write"] for run in runs for r in load(run.split()[1])["results"]
                if r["scenario"]["name"].startswith("fanout-15k") and r.get("bare")]
        print(f"{label}: fanout-15k bare write {min(bare):.2f}–{max(bare):.2f} µs, median {statistics.median(bare):.2f}")


def median_batch_minus_floor(label, runs):
    """Over the fanout-15k scenarios of `runs`: each median batch minus its CPU floor, as a
    range."""
    gaps = [r["batch_p99_median_ms"] - r["batch_cpu_floor_ms"] for run in runs for r in load(run.split()[1])["results"]
            if r["scenario"]["name"].startswith("fanout-15k")]
    print(f"{label}: median batch minus its CPU floor, fanout-15k scenarios: {min(gaps):+.1f} to {max(gaps):+.1f} ms")


def per_request(path, marker=""):
    """µs CPU per request of each line of an `http_cost.py` output (a file) containing
    `marker`."""
    return [float(re.search(r"([\d.]+) µs CPU per request", line)[1])
            for line in pathlib.Path(path).read_text().splitlines() if "µs CPU per request" in line and marker in line]


def profile_groups(path):
    """Per run of an http-cost-profile output (round 26's `http-cost-profile.py`): (rate,
    {system call, crate or function: µs per request})."""
    runs = []
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("rate "):
            runs.append((int(line.split()[1].rstrip("/s,")), {}))
        elif (m := re.match(r"\s+([\d.]+) µs  (.+)$", line)) and runs:
            runs[-1][1].setdefault(m[2], float(m[1]))  # first listing of a name: its system call or crate
    return runs


def profile_cold_vs_warm(path, groups):
    """An http-cost-profile output's cold (100 per second) against warm (5,000) µs per
    request for each of `groups`, pairing the first run at each rate, then the second."""
    runs = profile_groups(path)
    cold = [g for rate, g in runs if rate == 100]
    warm = [g for rate, g in runs if rate == 5000]
    print(f"{pathlib.Path(path).name}: cold / warm per request, pairing the first run at each rate, then the second")
    for group in groups:
        ratios = " / ".join(f"{c[group] / w[group]:.1f}" for c, w in zip(cold, warm))
        print(f"  {group}: {' / '.join(str(c[group]) for c in cold)} vs {' / '.join(str(w[group]) for w in warm)} µs: {ratios} x")


def wake_speed(path):
    """A wake-speed output (round 26's `wake-speed.c`, runs headed "# run N, ..."): per run,
    how much slower the register-only chunks and the pointer chain were after 10 ms of sleep
    than after 0.2 ms, rounds of the same run paired in order."""
    for block in pathlib.Path(path).read_text().split("# run ")[1:]:
        rows = {}
        for line in block.splitlines():
            if m := re.match(r"sleep\s+(\d+) us: chunks (\d+) / (\d+) / (\d+) / (\d+) ns; chain ([\d.]+)", line):
                rows.setdefault(int(m[1]), []).append([int(m[i]) for i in range(2, 6)] + [float(m[6])])
        slow_chunks = [a / b - 1 for x, y in zip(rows[10000], rows[200]) for a, b in zip(x[:4], y[:4])]
        chains = [x[4] / y[4] for x, y in zip(rows[10000], rows[200])]
        print(f"wake-speed run {block.split(',')[0]}: chunks after 10 ms at most {100 * max(slow_chunks):.1f} % slower "
              f"(first chunk {', '.join(f'{100 * (x[0] / y[0] - 1):.1f}' for x, y in zip(rows[10000], rows[200]))} %); "
              f"chain {' / '.join(f'{c:.1f}' for c in chains)} x")


def latency_by_batch(runs, scenario="latency-500"):
    """Per run of `runs` ("NAME STAMP" each): the scenario's read and arrival p99, whether
    its clients were pinned, and per batch where its p99 came from: the time from publish
    to 99 % of the frames arrived on the sockets (the gateway's part) and from there to
    99 % read (the clients' part), as medians over the slow batches (p99 over 1.2 x the
    median batch) and over the rest."""
    for run in runs:
        name, stamp = run.split()
        r = result(load(stamp), scenario)
        read = [b[1] for b in r["per_batch_excess_ms"]]  # each batch's (p50, p99, max): its p99
        arrived = [b[1] for b in r["per_batch_arrival_ms"]]
        slow_set = set(slow(read))
        parts = []
        for label, idx in (("slow", sorted(slow_set)), ("other", [i for i in range(len(read)) if i not in slow_set])):
            if idx:
                parts.append(f"{label} {len(idx)}: arrival {statistics.median(arrived[i] for i in idx):.2f} + "
                             f"reading {statistics.median(read[i] - arrived[i] for i in idx):.2f} ms")
        print(f"{name} {stamp}: clients pinned {r['scenario'].get('pin_clients', False)}, read p99 {r['excess_p99_ms']:.1f}, "
              f"arrival p99 {r['arrival_ms'][2]:.1f} ms; per batch (median) " + "; ".join(parts))


def round_figures(label, name, full, idle, earlier, stalled=False):
    """A round's standard figures, in the order the rounds' `derived.py` print them: the
    full runs' report and headers, their slow batches beside the bare write's and with the
    host's steal, the bare write against `earlier` rounds' ((label, runs) each), each median
    batch against its floor, and the clients-idle run `idle`; with `stalled` (rounds 30 on,
    whose full runs hold the stalled-readers pair), then latency-500 batch by batch, the
    clients-idle run's header and the stalled pair of each full run."""
    report(label, full)
    run_headers(full)
    slow_gateway_vs_bare(full)
    slow_batches_with_steal(full)
    bare_write_by_round(earlier + [(name, full)])
    median_batch_minus_floor(name, full)
    clients_idle(idle)
    if stalled:
        latency_by_batch(full)
        run_headers([idle])
        stalled_pairs(full)


def ab_medians(scenario, sides):
    """Per side of an A/B ((label, ["NAME STAMP", ...]) each): the medians of its runs'
    read and arrival p99 for `scenario`, one line each."""
    for label, runs in sides:
        res = [result(load(r.split()[1]), scenario) for r in runs]
        read = statistics.median(r["excess_p99_ms"] for r in res)
        arrival = statistics.median(r["arrival_ms"][2] for r in res)
        print(f"{scenario} A/B, {label}: median read p99 {read:.2f} ms, median arrival p99 {arrival:.2f} ms")


def stalled_pairs(runs):
    """Per run of `runs` ("NAME STAMP" each): its stalled-readers scenarios (round 29 on),
    one line each: connections, stalled, slow-consumer closes, frames queued, the readers'
    messages delivered of expected, read p99 and arrival p99, CPU per frame, and the frames
    the gateway counted as sent to each stalled connection before closing it (written or
    queued: `pushfleet_frames_sent_total` counts only those since round 29's fix; before,
    also the offers its full outbox refused)."""
    for run in runs:
        name, stamp = run.split()
        d = load(stamp)
        for r in d["results"]:
            s = r["scenario"]
            if not s["name"].startswith("stalled"):
                continue
            print(f"{name} {stamp} {s['name']}: build {d['gateway_build_id'][:12]}, {r['connected']} connections, "
                  f"{s.get('stalled', 0)} stalled, closed as slow consumers {r['slow_consumer_closes']:.0f}, "
                  f"frames queued {r['frames_queued']:.0f}, readers' messages {r['messages_delivered']} of "
                  f"{r['messages_expected']}, read p99 {r['excess_p99_ms']:.1f} ms, arrival p99 {r['arrival_ms'][2]:.1f} ms, "
                  f"CPU {r['cpu_us_per_frame']:.2f} µs per frame"
                  + stalled_before_close(r, s))


def stalled_before_close(r, s):
    """What each stalled connection of a stalled-readers scenario run took before its
    close: frames, their megabytes (at the run's average frame), and the seconds of
    publishing that is (one frame per message, window 0)."""
    if not s.get("stalled"):
        return ""
    frames = (r["gateway_frames_sent"] - r["frames_delivered"]) / s["stalled"]
    return (f"; frames sent to each stalled one before its close {frames:.0f} "
            f"({frames * r['avg_frame_bytes'] / 1e6:.1f} MB, {frames / s['rate']:.1f} s of publishing)")


def excess_over_bare(label, runs):
    """Per fanout-15k scenario: the gateway's CPU per frame minus the bare write in each of
    `runs`, µs, one line each."""
    for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis"):
        rows = [result(load(run.split()[1]), sc) for run in runs]
        excess = [r["cpu_us_per_frame"] - r["bare"]["cpu_us_per_write"] for r in rows]
        print(f"{sc}: gateway CPU per frame minus the bare write, {label}: " + " / ".join(f"{e:+.2f}" for e in excess) + " µs")


def criterion_medians(path):
    """Criterion's median estimates (the middle of each `time:` line) in a saved `cargo
    bench` output, µs by benchmark name."""
    lines = pathlib.Path(path).read_text().splitlines()
    out = {}
    for name, line in zip(lines, lines[1:]):
        if line.strip().startswith("time:") and "/" in name and " " not in name.strip():
            value, unit = line.split("[")[1].split()[2:4]
            out[name.strip()] = float(value) * {"ns": 1e-3, "µs": 1.0, "ms": 1e3}[unit]
    return out


def deployment_estimate(runs):
    """What a deployment with the clients elsewhere can expect: a batch's fan-out to 15,000
    connections over two cores at the fanout-15k scenarios' CPU per frame in `runs`."""
    per_frame = [result(load(run.split()[1]), sc)["cpu_us_per_frame"]
                 for run in runs for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis")]
    print(f"15,000 x {min(per_frame):.2f}-{max(per_frame):.2f} µs / 2 cores = "
          f"{15000 * min(per_frame) / 2 / 1000:.0f}-{15000 * max(per_frame) / 2 / 1000:.0f} ms per batch, "
          f"median {15000 * statistics.median(per_frame) / 2 / 1000:.0f} ms")


def http_publish_per_frame(path):
    """The HTTP publish's CPU per request at 100 a second (the rate-100 lines of round 25's
    `http-cost-by-rate.sh` output at `path`), per second and per frame of a 15,000-connection
    batch, one line."""
    cost = per_request(path, "rate 100, CPUs idle between requests: ")
    print("HTTP publish at 100 a second: " + " / ".join(f"{c:.1f}" for c in cost) + " µs per request = "
          + " / ".join(f"{c * 100 / 1000:.1f}" for c in cost) + " ms of CPU per second = "
          + " / ".join(f"{c * 100 / 15000:.2f}" for c in cost) + " µs per frame at 15,000 frames a second")


def cpu_shares(runs, floor_gap=False):
    """Where a fanout-15k batch's CPU floor comes from, per scenario and run of `runs`: the
    gateway's and the clients' CPU per batch (ms), and what each share alone would take
    over the two cores; with `floor_gap`, also the floor minus the floor without the
    gateway's user-mode CPU."""
    for sc in ("fanout-15k", "fanout-15k-small", "fanout-15k-redis"):
        for run in runs:
            name, stamp = run.split()
            r = result(load(stamp), sc)
            gw, cl = (r[k] * 1000 / r["batches"] for k in ("gateway_cpu_s", "clients_cpu_s"))
            gap = (f"; floor minus the floor without the gateway's user-mode CPU "
                   f"{r['batch_cpu_floor_ms'] - r['batch_floor_without_gateway_code_ms']:+.1f} ms" if floor_gap else "")
            print(f"{name} {sc}: per batch gateway {gw:.0f} ms of CPU ({r['gateway_sys_s'] / r['gateway_cpu_s']:.0%} in the "
                  f"kernel), clients {cl:.0f} ms; over two cores the gateway's alone {gw / 2:.0f} ms, the clients' "
                  f"{cl / 2:.0f} ms{gap}")


def criterion_against(run, path, others):
    """Criterion's medians of `run` (its saved output at `path`) against `others` ((label,
    path) each), one line per benchmark with each ratio; returns `run`'s medians."""
    mine = criterion_medians(path)
    theirs = [(label, criterion_medians(p)) for label, p in others]
    for name, us in mine.items():
        print(f"criterion {name}: {run} {us:.2f} µs; "
              + "; ".join(f"{label} {other[name]:.2f} µs, {run} {us / other[name]:.2f} x"
                          for label, other in theirs if name in other))
    return mine
