#!/usr/bin/env bash
# benches/ab-import.sh OLD NEW [ROUNDS] — two imgstore binaries, alternating,
# on the big image compare.sh builds ($WORK/images/big): an ACI import and an
# oci-archive import with --verify-layers, the page cache dropped before each
# and a final `sync -f` timed with it. For before/after checks of a change to
# the import path, where one compare.sh run per binary is too noisy.
# As root (drop_caches). WORK defaults to compare.sh's, /tmp/imgstore-compare;
# STORE_DIR (default /var/tmp) is where the throwaway stores go.
set -euo pipefail
old=${1:?usage: benches/ab-import.sh OLD NEW [ROUNDS]} new=${2:?usage: benches/ab-import.sh OLD NEW [ROUNDS]}
rounds=${3:-4}
in=${WORK:-/tmp/imgstore-compare}/images/big
store=${STORE_DIR:-/var/tmp}/ab-import-store
[[ -f $in/big.aci && -f $in/big.oci.tar ]] || { echo "error: no $in/big.aci; run benches/compare.sh --image big first" >&2; exit 1; }
trap 'rm -rf "$store"' EXIT
declare -A times
for scenario in aci verify; do
    for ((r = 1; r <= rounds; r++)); do
        for which in old new; do
            bin=$old; [[ $which == new ]] && bin=$new
            args=("$in/big.aci"); [[ $scenario == verify ]] && args=(--verify-layers "$in/big.oci.tar")
            rm -rf "$store"; sync; echo 3 >/proc/sys/vm/drop_caches
            t0=$(date +%s%N)
            "$bin" --store "$store" import "${args[@]}" >/dev/null
            sync -f "$(dirname "$store")"
            t1=$(date +%s%N)
            times[$scenario.$which]+=" $(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
        done
    done
done
for scenario in aci verify; do
    for which in old new; do echo "$scenario $which:${times[$scenario.$which]} s"; done
done
