#!/usr/bin/env bash
# Fidelity cells (matrices/fidelity.yaml, profile gpu, or $FIDELITY_PROFILE) on one GPU, time-boxed, several cells at once.
# Usage: [FIDELITY_PROFILE=sets] benchmarks/gpu_fidelity.sh DATA_ROOT RESULTS SECONDS PATTERN [PATTERN ...]
#   each PATTERN (an --only glob) gets its own runner process; every runner stops after SECONDS, and what
#   finished is kept (cells are written atomically; a re-run resumes only the missing ones). A PATTERN written
#   MATRIX:GLOB runs GLOB of matrices/MATRIX.yaml at that matrix's own profile instead (feature-epochs:"*_e30_*_s0").
# Example: benchmarks/gpu_fidelity.sh ../shared/data results 420 "mnist_ipc1_DC_*_s0" "mnist_ipc1_DSA_*_s0"
set -uo pipefail
data_root=$1 results=$2 seconds=$3 profile=${FIDELITY_PROFILE:-gpu}
shift 3
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
pids=()
i=0
reports=("$results/fidelity/$profile")
for pattern in "$@"; do
    i=$((i + 1))
    matrix=(matrices/fidelity.yaml -p "$profile")
    if [[ $pattern == *:* ]]; then   # MATRIX:GLOB
        matrix=("matrices/${pattern%%:*}.yaml")
        pattern=${pattern#*:}
        own=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['profile'])" "${matrix[0]}")
        reports+=("$results/$(basename "${matrix[0]}" .yaml)/$own")
    fi
    OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 timeout "$seconds" python3 -m bench.run "${matrix[@]}" \
        --data-root "$data_root" --results "$results" --no-report --only "$pattern" >"$results/runner$i.log" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
for folder in $(printf '%s\n' "${reports[@]}" | sort -u); do
    [ ! -d "$folder" ] || python3 -m bench.report "$folder" || true
done
