# The figures of docs/PERFORMANCE.md's round 26 section, from the runs' JSON:
#   python3 bench/results/round26-xeon/derived.py > bench/results/round26-xeon/derived.txt
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from run_figures import (bare_write_by_round, clients_idle, load, median_batch_minus_floor,  # noqa: E402
                         per_request, profile_cold_vs_warm, report, result, run_headers,
                         slow_batches_with_steal, slow_gateway_vs_bare, wake_speed)

FULL = ["DA 20261127T112526Z", "DB 20261127T113651Z", "DC 20261127T114353Z", "DE 20261127T121127Z"]
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

# The loopback write against round 25's, and each median batch against its CPU floor:
# the bare write of the fanout-15k scenarios of each round's full runs (median), and per
# scenario run its median batch minus its floor.
ROUND25 = ["CV 20261127T093712Z", "CW 20261127T094527Z", "CX 20261127T095126Z", "CZ 20261127T102001Z"]
bare_write_by_round([("round 25", ROUND25), ("round 26", FULL)])
median_batch_minus_floor("round 26", FULL)

# The HTTP publish's figures the text derives from this directory's text files.
here = pathlib.Path(__file__).resolve().parent
PROFILE_GROUPS = ("user space", "do_writev", "__x64_sys_epoll_wait", "kernel", "tokio", "hyper", "libc.so.6", "gateway")
for name in ("http-cost-profile.txt", "http-cost-profile-repeat.txt"):
    profile_cold_vs_warm(here / name, PROFILE_GROUPS)

early, late = per_request(here / "http-cost-by-rate.txt", "rate 100, CPUs idle between requests: "), per_request(here / "http-cost-late.txt")
print(f"100 per second, unprofiled: {min(early):.1f}–{max(early):.1f} µs, half an hour later {min(late):.1f}–{max(late):.1f}: "
      f"+{100 * (min(late) / max(early) - 1):.0f} to +{100 * (max(late) / min(early) - 1):.0f} %")
unpinned = per_request(here / "http-cost-pinned.txt", "target/release/gateway:")
pinned = per_request(here / "http-cost-pinned.txt", "gw-pinned.sh:")
print("pinned cheaper per round: " + " / ".join(f"{100 * (1 - p / u):.0f} %" for u, p in zip(unpinned, pinned)))

# fanout-15k-small's CPU per frame without ~1 µs of HTTP publishing (100 × ~150 µs ÷ 15,000 frames).
for run in FULL[1:3]:
    r = result(load(run.split()[1]), "fanout-15k-small")
    print(f"{run.split()[0]} fanout-15k-small: {r['cpu_ratio_to_bare']:.2f} x; with 1 µs less per frame "
          f"{(r['cpu_us_per_frame'] - 1) / r['bare']['cpu_us_per_write']:.2f} x")

# wake-speed.txt: each sleep's chunks and chain, the 10 ms rounds against the 0.2 ms rounds of the same run.
wake_speed(here / "wake-speed.txt")
