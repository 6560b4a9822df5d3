#!/usr/bin/env bash
# Everything one GPU lease measures, in one time-boxed script (a lease is 15 minutes, start included).
#   1. alone on the GPU: seconds per inner loop, per-class path vs all classes at once, float32 vs the opt-in
#      bf16 (IDC and DREAM+ at MNIST and CIFAR-10 shape, IPC 10 factor 2; DM), JSON lines in OUT/speed.jsonl;
#      the sampler's embedding pass against batch size / channels-last / inference mode (OUT/embedding.jsonl);
#      with PACKING=1, cells per GPU-hour with 4 cells sharing the GPU against one at a time (OUT/packing.jsonl)
#   2. then, sharing the GPU until the deadline: a short DREAM+ run on real MNIST, all classes at once in float32
#      and in bf16 (OUT/batched_accuracy.jsonl; the per-class run of the same seeds is in
#      benchmarks/measured/h200-2026-11-26-batched-accuracy.jsonl, or add ACCURACY_PATHS=both), and the fidelity
#      cells named by PATTERNs (matrices/fidelity.yaml -p gpu, or -p $FIDELITY_PROFILE),
#      returned as OUT/fidelity.tgz (finished cells, checkpoints and runner logs); a later lease resumes the
#      rest when RESUME_FROM names that archive (carried to the device)
# Usage: [RESUME_FROM=fidelity.tgz] [FIDELITY_PROFILE=sets] [ACCURACY_PATHS=both] [PACKING=1] bash benchmarks/gpu_lease.sh DATA_ROOT OUT DEADLINE_SECONDS [PATTERN ...]
set -uo pipefail
data_root=$1 out=$2 deadline=$3
shift 3
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the scripts import bench/ and methods/
left() { echo $(( deadline - SECONDS > 5 ? deadline - SECONDS : 5 )); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"; } >"$out/machine.txt" 2>&1
speed() { timeout "$1" python3 benchmarks/inner_loop.py "${@:2}" >>"$out/speed.jsonl" 2>>"$out/speed.err"; }
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py -k host_draws >"$out/gpu_tests.txt" 2>&1   # GPU-only test
speed 100 --dataset mnist --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both --precision both
speed 100 --dataset cifar10 --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both --precision both
speed 30 --dataset mnist --methods DM --iterations 200 --batch-classes both
for shape in mnist cifar10; do   # the sampler's embedding pass (80% of clustering) against GPU levers
    timeout 60 python3 benchmarks/embedding.py --dataset "$shape" >>"$out/embedding.jsonl" 2>>"$out/speed.err"
done
if [ -n "${PACKING:-}" ]; then   # cells per GPU-hour, 4 short DREAM+ cells alone vs 4 at once (OUT/packing.jsonl)
    timeout 240 python3 benchmarks/packing.py --data-root "$data_root" --workers 4 >>"$out/packing.jsonl" 2>>"$out/speed.err"
fi
echo "speed phase done at ${SECONDS}s" >>"$out/machine.txt"
accuracy() { timeout "$(left)" python3 benchmarks/batched_accuracy.py --data-root "$data_root" --method DREAM+ --ipc 10 \
    --iterations 3 --eval-runs 3 --eval-epochs 300 "$@" >>"$out/batched_accuracy.jsonl" 2>>"$out/batched_accuracy.err"; }
accuracy --paths "${ACCURACY_PATHS:-all-classes}" & acc=$!   # float32
accuracy --paths all-classes --precision bfloat16 & bf16=$!   # alongside: accuracy does not depend on sharing
if [ $# -gt 0 ]; then
    work=$(mktemp -d)   # outside OUT: a results tree is deeper than what a lease hands back file by file
    if [ -n "${RESUME_FROM:-}" ]; then tar xzf "$RESUME_FROM" -C "$work"; fi
    budget=$(( $(left) - 20 )); [ "$budget" -ge 5 ] || budget=5   # leaves time for the report and the archive
    bash benchmarks/gpu_fidelity.sh "$data_root" "$work" "$budget" "$@" >"$out/fidelity.log" 2>&1
    tar czf "$out/fidelity.tgz" -C "$work" .   # with the feature networks (1.3 MB each): resumed cells pick from the same ones
fi
wait "$acc" "$bf16"
echo "all done at ${SECONDS}s" >>"$out/machine.txt"
