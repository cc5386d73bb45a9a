#!/bin/sh
# Round 32: criterion's shard fan-out run alone and after another benchmark, twice each,
# with the bench as committed ("before") and with fanout-beside-state.patch applied
# ("after": each connection registered beside 3 KiB of other state, as a gateway's
# connections sit among their sessions' allocations). Tried and not kept: both are
# bimodal, about 150-170 or 240-260 µs, whatever ran before. Run from the repository's
# root with a clean working tree:
#   sh bench/results/round32-epyc/criterion-fanout-layout.sh 6239e04 > bench/results/round32-epyc/criterion-fanout-layout.txt
set -e
before=$1
run() {
  for filter in "shard_fanout" "json_frame|shard_fanout"; do
    echo "# $1: cargo bench -p gateway --bench hot_path -- '$filter' --warm-up-time 1 --measurement-time 3"
    cargo bench -p gateway --bench hot_path -- "$filter" --warm-up-time 1 --measurement-time 3 2>/dev/null \
      | grep -E "^(shard|merge)|^ +time:" | grep -v "%"
  done
}
git show "$before":gateway/benches/hot_path.rs > gateway/benches/hot_path.rs
run "before ($before)"
run "before ($before), again"
git apply bench/results/round32-epyc/fanout-beside-state.patch
run "after"
run "after, again"
git checkout gateway/benches/hot_path.rs
