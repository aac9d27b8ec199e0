#!/bin/bash
# The next lent GPU's first check (benchmarks/results/minigrid_mt5.md, "The evaluation on the GPU, taken apart"):
# on the H200, ~98% of an MT5 evaluation was its policy side, ~11.5 ms per scan step for ~20 small kernels.
# This times the evaluation and its parts three ways, one process each (each ~2-3 min on the H200, most of it
# compiling; 180 s at most, so the three fit one 600 s device call):
#   as users run it; with XLA's Triton GEMM fusions off (cuBLAS instead: the policy's loop body is ~20 kernels,
#   five Triton GEMM fusions of odd small shapes, e.g. a batch of 50 products [144x16].[16x3], and a dozen
#   elementwise fusions; a speedup here would point at the GEMMs, no change would not clear them); with XLA's
#   command buffers (CUDA graphs) off.
# Run from the repository root on the device, after installing what it lacks (PYTHONPATH set by the caller):
#   bash benchmarks/gpu_eval_check.sh "$OUT"
out=${1:?usage: gpu_eval_check.sh OUT_DIR}
mkdir -p "$out"
run() {  # NAME XLA_FLAGS
  XLA_FLAGS="$2" timeout -k 5 180 python3 benchmarks/eval_cost.py --seeds 10 --variant shared --no-train --parts \
    --repeats 1 > "$out/eval_cost_$1.txt" 2>&1
  echo "== $1 (XLA_FLAGS='$2', rc $?)"; tail -5 "$out/eval_cost_$1.txt"
}
run default ""
run no_triton_gemm "--xla_gpu_enable_triton_gemm=false"
run no_command_buffers "--xla_gpu_enable_command_buffer="
