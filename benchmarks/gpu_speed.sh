#!/usr/bin/env bash
# The GPU speed check of the engine (issue: fastest faithful engine), ready for one lease: seconds per inner
# loop (matching + network update) split by phase, with the GPU synchronised at every phase boundary, for IDC
# and DREAM+ at MNIST and CIFAR-10 shape (IPC 10, factor 2) and DM, each with the per-class path and the
# all-classes-at-once path (vmap over classes; IDC's per-class steps in closed form) in the same run.
# Prints one JSON line per run. Usage: bash benchmarks/gpu_speed.sh   (about 5 minutes on an H100/H200)
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONUNBUFFERED=1
for shape in mnist cifar10; do
    timeout 200 python3 benchmarks/inner_loop.py --dataset "$shape" --methods IDC DREAM+ --iterations 1 --steps 30 --batch-classes both --levers both
    timeout 60 python3 benchmarks/inner_loop.py --dataset "$shape" --methods DM --iterations 300 --batch-classes both
done
