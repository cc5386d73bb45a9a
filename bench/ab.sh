#!/bin/sh
# A/B comparison of two gateway builds under the same scenario, in one session: the runs
# alternate (A, B, A, B, …) so that drift of this shared machine hits both alike.
#
#   bench/ab.sh A_GATEWAY B_GATEWAY SCENARIO [ROUNDS]
#
# A_GATEWAY / B_GATEWAY: two release builds of the gateway binary (copy
# target/release/gateway aside after each build). SCENARIO: as for `bench run --only`.
# Prints each run's summary line, labelled A or B. target/release/gateway is restored
# afterwards. Results land in ${AB_OUT:-/tmp/pushfleet-ab}, not in bench/results.
# AB_SIZE=quick picks from the quick scenarios (e.g. fanout-3k); default full.
set -eu
[ $# -ge 3 ] || { sed -n '2,10p' "$0"; exit 2; }
a=$1 b=$2 only=$3 rounds=${4:-2}
case $rounds in '' | *[!0-9]*) echo "ROUNDS must be a number, not '$rounds'" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
bin=target/release/gateway
[ -x target/release/bench ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 2; }
saved=$(mktemp)
# -p keeps the mode and times: mktemp's file is 0600, and a plain cp back would leave the
# build without its execute bit (and cargo, seeing it fresh, would not rebuild it).
cp -p "$bin" "$saved"
# rm before each cp: the binary is a hard link to cargo's own copy in target/release/deps,
# which a cp onto it would overwrite.
trap 'rm -f "$bin"; cp -p "$saved" "$bin"; rm -f "$saved"' EXIT
i=1
while [ "$i" -le "$rounds" ]; do
    for side in A B; do
        if [ "$side" = A ]; then src=$a; else src=$b; fi
        rm -f "$bin"
        cp "$src" "$bin"
        ./target/release/bench run --size "${AB_SIZE:-full}" --only "$only" --out "${AB_OUT:-/tmp/pushfleet-ab}" 2>&1 |
            grep --line-buffered ': connected' | sed "s/^bench: /$side round $i: /"
    done
    i=$((i + 1))
done
