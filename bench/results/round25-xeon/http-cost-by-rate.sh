#!/bin/sh
# Round 25: the gateway's CPU per HTTP publish against the publish rate, and at 100 per
# second with both CPUs kept from idling by a SCHED_IDLE spinner each (which any woken
# thread preempts at once). Run from the repository's root after a release build:
#   sh bench/results/round25-xeon/http-cost-by-rate.sh > bench/results/round25-xeon/http-cost-by-rate.txt
set -e
gw=target/release/gateway
for rate in 100 1000 5000 100 1000 5000; do
  python3 bench/http_cost.py --requests 2000 --rate $rate --rounds 1 $gw | sed "s/^/rate $rate, CPUs idle between requests: /"
done
pids=""
for cpu in $(python3 -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))'); do
  timeout 120 taskset -c "$cpu" chrt -i 0 python3 -c 'while True: pass' &
  pids="$pids $!"
done
python3 bench/http_cost.py --requests 2000 --rate 100 --rounds 2 $gw | sed "s/^/rate 100, a SCHED_IDLE spinner on each CPU: /"
kill $pids
wait 2>/dev/null || true
python3 bench/http_cost.py --requests 2000 --rate 100 --rounds 1 $gw | sed "s/^/rate 100, CPUs idle between requests (after the spinners): /"
