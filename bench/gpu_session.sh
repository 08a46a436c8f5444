#!/usr/bin/env bash
# Everything a short GPU window should run, in one go (issue 12): correctness first, then speed.
#   bash bench/gpu_session.sh [--only SUBSTRING]      # results under ${OUT:-bench/results}/
# 1. the CUDA composition and the Triton kernel against the reference on the GPU, autotuning
#    off (autotuning every random shape took more than 200 s);
# 2. bench/gpu.py, which rewrites its JSON after every shape (a cut-short run keeps its rows).
set -u
out=${OUT:-bench/results}; mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-src} SEPCONV_TRITON_AUTOTUNE=0
python -m pytest -q -p no:cacheprovider tests/test_kernel_cuda.py tests/test_kernel_triton.py \
    2>&1 | tail -n 20 | tee "$out/gpu_tests.txt"
unset SEPCONV_TRITON_AUTOTUNE
python bench/gpu.py --reps 10 --warmup 3 --out "$out/gpu" "$@" 2>&1 | tee "$out/gpu_bench.txt"
