#!/usr/bin/env bash
# Everything a short GPU window should run, in one go (issue 12).  Results under ${OUT:-bench/results}/.
#   bash bench/gpu_session.sh tests bench probe      # any of the three parts, in that order
# tests: the CUDA composition, the Triton kernel and the layers against the reference on the
#        GPU, autotuning off (the default, forced here in case SEPCONV_TRITON_AUTOTUNE=1 is
#        exported: autotuning every random shape took more than 200 s);
# bench: bench/gpu.py (JSON rewritten after every shape: a cut-short run keeps its rows);
#        BENCH_ARGS adds options (e.g. "--skip-triton", "--only long");
# probe: bench/gpu_probe.py (Triton configs and precisions vs the composition's parts,
#        per-kernel profile, CUDA graphs and torch.compile through the layer).
set -u
out=${OUT:-bench/results}; mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv \
    | tee "$out/gpu_info.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/gpu_info.txt"
for part in "$@"; do
  case $part in
    tests) SEPCONV_TRITON_AUTOTUNE=0 timeout ${TESTS_TIMEOUT:-240} python -m pytest -q \
             -p no:cacheprovider tests/test_kernel_cuda.py tests/test_kernel_triton.py tests/test_layer.py \
             2>&1 | tail -n 25 | tee "$out/gpu_tests.txt" ;;
    bench) timeout ${BENCH_TIMEOUT:-300} python bench/gpu.py --reps 10 --warmup 3 \
             --out "$out/gpu" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu_bench.txt" ;;
    probe) timeout ${PROBE_TIMEOUT:-300} python bench/gpu_probe.py --out "$out" \
             ${PROBE_ARGS:-} 2>&1 | tee "$out/gpu_probe.txt" ;;
    *) echo "unknown part $part (tests, bench, probe)"; exit 2 ;;
  esac
done
