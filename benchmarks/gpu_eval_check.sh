#!/bin/bash
# The next lent GPU's first check (benchmarks/results/minigrid_mt5.md, "The evaluation on the GPU, taken apart").
# Found on the H200 (2026-12-04, 18:2x UTC): the policy's scan step costs 0.04 ms on observations passed in,
# and 85.8 ms when the environments are reset inside the same program; XLA's Triton GEMMs and command buffers
# were cleared (no change).  evaluate_params now compiles its reset apart (same returns; no change on the CPU).
# This times (benchmarks/gpu_policy_bisect.py; its "identical" line checks the returns) the evaluation in one
# program as it was against the same episodes as it runs now, and the slow policy scan with and without an
# optimization barrier after its reset: ~4 min on the H200 (estimated: compiles ~2.5 min, the scans ~1.5 min
# if the evaluation is still slow); 360 s at most.
# Run from the repository root on the device, after installing what it lacks (PYTHONPATH set by the caller,
# benchmarks/ on it):
#   bash benchmarks/gpu_eval_check.sh "$OUT"
out=${1:?usage: gpu_eval_check.sh OUT_DIR}
mkdir -p "$out"
timeout -k 5 360 python3 benchmarks/gpu_policy_bisect.py --seeds 10 --horizon 100 --repeats 2 \
  --only "evaluation,reset in the program" > "$out/gpu_policy_bisect.txt" 2>&1
echo "== rc $?"; grep -v Warning "$out/gpu_policy_bisect.txt" | tail -12
