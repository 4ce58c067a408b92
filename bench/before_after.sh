#!/usr/bin/env bash
# Before/after on one machine: the working tree's `aqa bench` measuring code run alternately on the package as it
# was at commit BEFORE and as it is now, ROUNDS times each (default 4) in ABBA order; the JSON reports land in OUT
# and the medians with their ratios are printed as a Markdown table (bench/compare.py).
#
#   bench/before_after.sh BEFORE OUT [aqa bench arguments...]
#   bench/before_after.sh 15bc53d^ /tmp/ab --model /tmp/answering-tiny --threads 1
#
# BEFORE is a commit, a folder holding the `aqa` package as it was (where there is no git: the GPU machine), or "."
# for the package as it is, to compare two settings: BEFORE_FLAGS and AFTER_FLAGS are added to each side's arguments.
#   BEFORE_FLAGS=--no-embeddings-on-cpu bench/before_after.sh . /tmp/ab --random-weights full --precision 4bit
# Give --model as an absolute path: the "before" side runs from a copy of the package in a temporary folder.
set -euo pipefail
before=$1 out=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
tree=$copy
if [ "$before" = . ]; then
    tree=$root
elif [ -d "$before/aqa" ]; then
    cp -r "$before/aqa" "$tree/"
else
    git -C "$root" archive "$before" aqa | tar -x -C "$tree"
fi
# The same measuring code on both sides (aqa/bench.py and its CLI wiring) where the BEFORE package has today's layout
# (aqa/cli/, aqa/answering.py); an older package measures itself with its own code (aqa/bench_measure.py), which
# measured the same figures the same way before the layout changed.
if [ "$tree" != "$root" ]; then
    if [ -d "$tree/aqa/cli" ] && [ -f "$tree/aqa/answering.py" ]; then
        cp "$root/aqa/bench.py" "$tree/aqa/" && cp "$root/aqa/cli/bench.py" "$tree/aqa/cli/"
    else
        echo "note: $before predates aqa/cli/: its own measuring code runs on the before side" >&2
    fi
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)  # each side runs in its own folder
run() {  # run SIDE ROUND ARGS...: one bench on the package as it was (before) or is (after)
    local side=$1 round=$2
    shift 2
    echo "round $round: $side" >&2
    local flags=${AFTER_FLAGS:-}
    [ "$side" = before ] && flags=${BEFORE_FLAGS:-}
    # shellcheck disable=SC2086  # flags is a list of arguments
    (cd "$([ "$side" = before ] && echo "$tree" || echo "$root")" \
        && python3 -m aqa bench "$@" $flags --json --output "$out/${side}_$round.json" >/dev/null)
}
for round in $(seq "${ROUNDS:-4}"); do  # ABBA order, so that a drift in the machine's load hits both sides alike
    if ((round % 2)); then run before "$round" "$@" && run after "$round" "$@"
    else run after "$round" "$@" && run before "$round" "$@"; fi
done
python3 "$root/bench/compare.py" "$out"
