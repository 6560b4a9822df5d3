#!/usr/bin/env bash
# Everything one GPU lease measures, in one time-boxed script (a lease is 15 minutes, start included).
#   1. alone on the GPU: seconds per inner loop, per-class path vs all classes at once, GPU levers on/off
#      (IDC and DREAM+ at MNIST and CIFAR-10 shape, IPC 10 factor 2; DM), JSON lines in OUT/speed.jsonl
#   2. then, sharing the GPU until the deadline: a short DREAM+ run on real MNIST with both paths
#      (OUT/batched_accuracy.jsonl) and paper-settings fidelity cells (OUT/fidelity/gpu, resumable)
# Usage: benchmarks/gpu_lease.sh DATA_ROOT OUT [DEADLINE_SECONDS]
set -uo pipefail
data_root=$1 out=$2 deadline=${3:-520}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
left() { echo $(( deadline - SECONDS > 5 ? deadline - SECONDS : 5 )); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print(torch.__version__)"; } >"$out/machine.txt" 2>&1
speed() { timeout "$1" python3 benchmarks/inner_loop.py "${@:2}" >>"$out/speed.jsonl" 2>>"$out/speed.err"; }
speed 110 --dataset mnist --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both --levers both
speed 100 --dataset cifar10 --methods IDC DREAM+ --iterations 1 --steps 20 --batch-classes both
speed 30 --dataset mnist --methods DM --iterations 200 --batch-classes both
speed 30 --dataset cifar10 --methods DM --iterations 200 --batch-classes both
echo "speed phase done at ${SECONDS}s" >>"$out/machine.txt"
timeout "$(left)" python3 benchmarks/batched_accuracy.py --data-root "$data_root" --method DREAM+ --ipc 10 \
    --iterations 4 --eval-runs 3 --eval-epochs 300 >"$out/batched_accuracy.jsonl" 2>"$out/batched_accuracy.err" &
acc=$!
bash benchmarks/gpu_fidelity.sh "$data_root" "$out" "$(left)" \
    "mnist_ipc1_DM_*_s0" "fashionmnist_ipc1_DM_*_s0" "fashionmnist_ipc1_DSA_*_s0" >"$out/fidelity.log" 2>&1
wait "$acc"
echo "all done at ${SECONDS}s" >>"$out/machine.txt"
