#!/usr/bin/env bash
# One GPU lease for the result pages, time-boxed (a lease is 15 minutes, start included):
#   - the open coreset rows, matrices/fidelity.yaml -p coresets (K-Center and Forgetting at IPC 10 on both datasets,
#     Herding at IPC 50 on MNIST): sets 0-4 first, then sets 5-9; then, once they are done,
#   - the IDC family's efficiency curves, matrices/efficiency.yaml -p gpu-short (IDC, DREAM, DREAM+), seed by seed so
#     each finished seed is a complete triple;
#   - alongside from the start, the DM family's curves (DM, DM+rm+init, DM+rm+init+bm) of the same profile.
# Cells are written atomically and checkpointed, so a lease cut short keeps what finished, and a later lease resumes
# from OUT/results.tgz (RESUME_FROM). The tree is archived every 30 s and once more at the end.
# Usage: [RESUME_FROM=results.tgz] [EXTRA="--set ..."] bash benchmarks/gpu_results.sh DATA_ROOT OUT DEADLINE_SECONDS
#   EXTRA: options added to every bench.run (a CPU smoke test of this script: EXTRA="--set evaluation.epochs=2 ...")
set -uo pipefail
data_root=$1 out=$2 deadline=$3
mkdir -p "$out"
results=$(mktemp -d)   # outside OUT: a results tree is deeper than what a lease hands back file by file
if [ -n "${RESUME_FROM:-}" ]; then tar xzf "$RESUME_FROM" -C "$results"; fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -n "${DREAMBENCH_SOURCE_COMMIT:-}" ] || echo "note: set DREAMBENCH_SOURCE_COMMIT to the commit sent; a copied .git can be stale" >&2
left() { echo $((deadline - SECONDS > 5 ? deadline - SECONDS : 5)); }
stamp() { echo "$1 at ${SECONDS}s" >>"$out/machine.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"; } >"$out/machine.txt" 2>&1
reserve=15   # seconds kept for the last archive
cells() {   # LOG MATRIX PROFILE WORKERS [--only GLOB ...]: one runner, stopped at the deadline less the reserve
    local log=$1 matrix=$2 profile=$3 workers=$4
    shift 4
    local budget=$(($(left) - reserve))
    [ "$budget" -ge 5 ] || { stamp "$log skipped: $(left)s left"; return; }
    # shellcheck disable=SC2086   # EXTRA: extra options for a smoke test
    timeout "$budget" python3 -m bench.run "matrices/$matrix.yaml" -p "$profile" --data-root "$data_root" \
        --results "$results" --no-report --workers "$workers" ${EXTRA:-} "$@" >>"$out/$log.log" 2>&1
    stamp "$log $* ended ($?)"
}
archive() {   # the results tree as one file, replaced atomically; not the feature-network caches (~0.5 GB each)
    tar czf "$out/.results.tgz.part" -C "$results" --exclude=.feature_nets --exclude=.locks . 2>/dev/null &&
        mv "$out/.results.tgz.part" "$out/results.tgz"
}
(
    cells coresets fidelity coresets 5 --only '*_s[0-4]'
    cells coresets fidelity coresets 5
    for seed in 0 1 2; do cells idc-family efficiency gpu-short 3 --only "*_IDC_*_s$seed" --only "*_DREAM*_s$seed"; done
) &
first=$!
cells dm-family efficiency gpu-short 3 --only '*_DM*' &
second=$!
while kill -0 "$first" 2>/dev/null || kill -0 "$second" 2>/dev/null; do
    sleep 5
    [ $((SECONDS % 30)) -ge 5 ] || archive
done
archive   # the reports are built where the archive is unpacked (dreambench report --publish)
stamp "all done"
