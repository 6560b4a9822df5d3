#!/usr/bin/env bash
# Everything one GPU lease measures, in one time-boxed script (a lease is 15 minutes, start included).
#   1. alone on the GPU (SPEED=0 skips): seconds per inner loop, per-class path vs all classes at once, float32
#      vs the opt-in bf16 (IDC and DREAM+ at MNIST and CIFAR-10 shape, IPC 10 factor 2; DM), JSON lines in
#      OUT/speed.jsonl; then (EMBEDDING=0 skips) the sampler's embedding pass against batch size / channels-last /
#      inference mode (OUT/embedding.jsonl)
#   2. then, sharing the GPU until the deadline: (ACCURACY=0 skips) a short DREAM+ run on real MNIST, all classes
#      at once in float32 and in bf16 (OUT/batched_accuracy.jsonl; the per-class run of the same seeds is in
#      benchmarks/measured/h200-2026-11-26-batched-accuracy.jsonl, or add ACCURACY_PATHS=both), and the fidelity
#      cells named by PATTERNs (matrices/fidelity.yaml -p gpu, or -p $FIDELITY_PROFILE), one runner per PATTERN,
#      returned as OUT/fidelity.tgz (finished cells, checkpoints and runner logs; not the feature-network caches,
#      which hold every training image's features, ~0.5 GB each). The archive is rewritten every minute, so a
#      lease cut off early still returns what finished; a later lease resumes the rest when RESUME_FROM names it.
#   3. with PACKING=1, if at least PACKING_SECONDS (default 150) are left: cells per GPU-hour, 4 short DREAM+
#      cells one at a time vs 4 at once (OUT/packing.jsonl; PACKING_ARGS adds options such as longer cells); with
#      PACKING=first it runs before the fidelity cells
# Usage: [RESUME_FROM=fidelity.tgz] [FIDELITY_PROFILE=sets] [SPEED=0] [EMBEDDING=0] [ACCURACY=0] [PACKING=1|first] [PACKING_ARGS=...]
#        bash benchmarks/gpu_lease.sh DATA_ROOT OUT DEADLINE_SECONDS [PATTERN ...]
set -uo pipefail
data_root=$1 out=$2 deadline=$3
shift 3
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the scripts import bench/ and methods/
left() { echo $(( deadline - SECONDS > 5 ? deadline - SECONDS : 5 )); }
stamp() { echo "$1 at ${SECONDS}s" >>"$out/machine.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"; } >"$out/machine.txt" 2>&1
speed() { timeout "$1" python3 benchmarks/inner_loop.py "${@:2}" >>"$out/speed.jsonl" 2>>"$out/speed.err"; }
packing() {
    if [ "$(left)" -ge "${PACKING_SECONDS:-150}" ]; then
        # shellcheck disable=SC2086   # PACKING_ARGS: extra options, e.g. "--iterations 5 --steps 100" for cells long enough to show sharing
        timeout "$(left)" python3 benchmarks/packing.py --data-root "$data_root" --workers 4 ${PACKING_ARGS:-} >>"$out/packing.jsonl" 2>>"$out/speed.err"
        stamp "packing done"
    else
        stamp "packing skipped: $(left)s left"
    fi
}
archive() {   # the results tree as one file, replaced atomically (a lease hands files back one by one)
    tar czf "$out/.fidelity.tgz.part" -C "$1" --exclude=.feature_nets --exclude=.locks . 2>/dev/null \
        && mv "$out/.fidelity.tgz.part" "$out/fidelity.tgz"
}
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py -k host_draws >"$out/gpu_tests.txt" 2>&1   # GPU-only test
if [ "${SPEED:-1}" != 0 ]; then
    speed 100 --dataset mnist --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both --precision both
    speed 100 --dataset cifar10 --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both --precision both
    speed 30 --dataset mnist --methods DM --iterations 200 --batch-classes both
fi
if [ "${EMBEDDING:-1}" != 0 ]; then
    for shape in mnist cifar10; do   # the sampler's embedding pass (80% of clustering) against GPU levers
        timeout 150 python3 benchmarks/embedding.py --dataset "$shape" >>"$out/embedding.jsonl" 2>>"$out/speed.err"
    done
fi
if [ "${PACKING:-}" = first ]; then packing; fi
stamp "speed phase done"
pids=()
accuracy() { timeout "$(left)" python3 benchmarks/batched_accuracy.py --data-root "$data_root" --method DREAM+ --ipc 10 \
    --iterations 3 --eval-runs 3 --eval-epochs 300 "$@" >>"$out/batched_accuracy.jsonl" 2>>"$out/batched_accuracy.err"; }
if [ "${ACCURACY:-1}" != 0 ]; then
    accuracy --paths "${ACCURACY_PATHS:-all-classes}" & pids+=($!)   # float32
    accuracy --paths all-classes --precision bfloat16 & pids+=($!)   # alongside: accuracy does not depend on sharing
fi
if [ $# -gt 0 ]; then
    work=$(mktemp -d)   # outside OUT: a results tree is deeper than what a lease hands back file by file
    if [ -n "${RESUME_FROM:-}" ]; then tar xzf "$RESUME_FROM" -C "$work"; fi
    budget=$(( $(left) - 20 )); [ "$budget" -ge 5 ] || budget=5   # leaves time for the report and the archive
    bash benchmarks/gpu_fidelity.sh "$data_root" "$work" "$budget" "$@" >"$out/fidelity.log" 2>&1 & fidelity=$!
    n=0
    while kill -0 "$fidelity" 2>/dev/null; do sleep 5; n=$((n + 1)); [ $((n % 12)) -ne 0 ] || archive "$work"; done
    wait "$fidelity"
    archive "$work"
    stamp "fidelity done"
fi
if [ "${PACKING:-}" = 1 ]; then packing; fi
[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
stamp "all done"
