#!/bin/sh
# Round 25: the gateway's CPU per HTTP publish at 100 per second, alone and while
# `perf record` samples every CPU 10,000 times a second (whose timer interrupts keep the
# virtual CPUs from halting for more than 0.1 ms, as the busy loops of
# http-cost-by-rate.sh do). Alternating, four rounds each. From the repository's root
# after a release build:
#   sh bench/results/round25-xeon/http-cost-under-perf.sh > bench/results/round25-xeon/http-cost-under-perf.txt
set -e
gw=target/release/gateway
data=$(mktemp)
for round in 1 2 3 4; do
  python3 bench/http_cost.py --requests 1500 --rate 100 --rounds 1 $gw | sed "s/^/alone: /"
  perf record -q -a -e cpu-clock/period=100000/ -o "$data" -- \
    python3 bench/http_cost.py --requests 1500 --rate 100 --rounds 1 $gw | sed "s/^/under perf record -a at 10 kHz: /"
done
rm -f "$data"
