#!/usr/bin/env bash
# Everything a short GPU window should run, in one go (issue 12).  Results under ${OUT:-bench/results}/.
#   bash bench/gpu_session.sh tests bench probe      # any of the parts, in the order given
#   bash bench/gpu_session.sh v2                     # Triton variant 2 only (about 9 minutes)
# tests: the CUDA composition, the Triton kernel and the layers against the reference on the
#        GPU, autotuning off (the default, forced here in case SEPCONV_TRITON_AUTOTUNE=1 is
#        exported: autotuning every random shape took more than 200 s);
# bench: bench/gpu.py (JSON rewritten after every shape: a cut-short run keeps its rows);
#        BENCH_ARGS adds options (e.g. "--skip-triton", "--only long");
# probe: bench/gpu_probe.py (Triton configs and precisions vs the composition's parts,
#        per-kernel profile, CUDA graphs and torch.compile through the layer);
# v2:    Triton variant 2 (kernels/triton_v2.py, unmeasured until then) in one go, each step
#        under its own timeout so a slow one leaves the next its time: its CUDA tests (the
#        child role of tests/test_kernel_triton.py, no interpreter), bench/gpu.py with the
#        triton and triton_v2 columns on V2_ONLY shapes (-> $out/gpu-v2.json), then the
#        probe's v2 tiles and per-kernel profile (-> $out/probe-v2/probe.json).
#        DRY=1 rehearses it on a CPU (Triton interpreter, tiny shapes, times meaningless).
# rule:  functional's CUDA rule checked (about 4 minutes): tests/test_kernel_cuda.py on the GPU,
#        then bench/gpu.py on every shape with the triton_v2 columns and the dispatched
#        kernel, float32 (TF32 off), bfloat16 and torch's default float32 (cuDNN TF32 on)
#        (-> $out/gpu-rule.json); DRY=1 works here too.
# check:  one window's worth (~7 minutes), each step under its own timeout, most important
#        first: tests/test_kernel_cuda.py and variant 2's tests on the GPU, where the small
#        layers' host time goes (unless CHECK_HOST=0: bench/host_profile.py ->
#        $out/host_profile.txt), then the
#        `rule` bench (-> $out/gpu-rule.json), then (unless CHECK_PROBE=0) the probe's
#        CHECK_PROBE_PARTS (default v2: variant 2's interior tiles against the masked ones,
#        per kernel) with CHECK_PROBE_ARGS (default --v2-switches-only; "" adds the tile
#        sweeps) on CHECK_PROBE_SHAPES (-> $out/probe/probe.json), then the per-kernel CUDA
#        time of a training step on CHECK_PROFILE_SHAPES (-> $out/probe-profile/probe.json);
#        DRY=1 works here too.
set -u
dry=""
v2_only=${V2_ONLY:-quartznet_b1,quartznet_b5,matchboxnet,conformer,causal_stream,timeseries,tcn,long-256}
v2_probe_shapes=${V2_PROBE_SHAPES:-quartznet_b5,causal_stream_128,long-256}
check_probe_shapes=${CHECK_PROBE_SHAPES:-multiplier_2,stream_b1,long-256}
check_profile_shapes=${CHECK_PROFILE_SHAPES:-multiplier_2}
if [ "${DRY:-0}" = 1 ]; then
  export TRITON_INTERPRET=1; dry=--dry-run; v2_only=tiny; v2_probe_shapes=tiny
  check_probe_shapes=tiny; check_profile_shapes=tiny
fi
out=${OUT:-bench/results}; mkdir -p "$out"
# `-o addopts=`: pyproject's addopts are CI's (xdist's loadfile, 4 processes at most).  The
# GPU image has pytest-xdist (KINDS.md, 2026-11-17): variant 2's CUDA tests compile a kernel
# per geometry (66 of ~110 in 150 s, one process, 2026-11-27), so they run 8 at a time.
xdist=""
python -c "import xdist" 2>/dev/null && [ "${DRY:-0}" != 1 ] && xdist="-n 8"
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1
# the steps `rule` and `check` share: cuda_tests TIMEOUT FILE, rule_bench TIMEOUT
cuda_tests() {
  SEPCONV_TRITON_AUTOTUNE=0 timeout "$1" python -m pytest -q -p no:cacheprovider \
      -o addopts= tests/test_kernel_cuda.py 2>&1 | tail -n 15 | tee "$2"
}
rule_bench() {
  timeout "$1" python bench/gpu.py $dry --reps ${RULE_REPS:-15} --warmup 3 \
      --variants triton_v2,triton_v2_savez --out "$out/gpu-rule" \
      --dtypes float32,bfloat16,float32_torch_default 2>&1 | tee "$out/gpu_rule_bench.txt"
}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv \
    | tee "$out/gpu_info.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/gpu_info.txt"
for part in "$@"; do
  case $part in
    tests) SEPCONV_TRITON_AUTOTUNE=0 timeout ${TESTS_TIMEOUT:-240} python -m pytest -q \
             -p no:cacheprovider -o addopts= tests/test_kernel_cuda.py tests/test_kernel_triton.py tests/test_layer.py \
             2>&1 | tail -n 25 | tee "$out/gpu_tests.txt" ;;
    bench) timeout ${BENCH_TIMEOUT:-300} python bench/gpu.py --reps 10 --warmup 3 \
             --out "$out/gpu" ${BENCH_ARGS:-} 2>&1 | tee "$out/gpu_bench.txt" ;;
    probe) timeout ${PROBE_TIMEOUT:-300} python bench/gpu_probe.py --out "$out" \
             ${PROBE_ARGS:-} 2>&1 | tee "$out/gpu_probe.txt" ;;
    v2) SEPCONV_TRITON_CHILD=1 SEPCONV_KERNEL= SEPCONV_TRITON_AUTOTUNE=0 \
          timeout ${V2_TESTS_TIMEOUT:-150} python -m pytest -q -p no:cacheprovider -o addopts= --noconftest \
             tests/test_kernel_triton.py -k "v2 or variant" 2>&1 | tail -n 25 \
          | tee "$out/gpu_v2_tests.txt"
        timeout ${V2_BENCH_TIMEOUT:-240} python bench/gpu.py $dry --reps 10 --warmup 3 \
             --variants triton,triton_v2,triton_v2_savez --out "$out/gpu-v2" \
             --only "$v2_only" \
             2>&1 | tee "$out/gpu_v2_bench.txt"
        timeout ${V2_PROBE_TIMEOUT:-150} python bench/gpu_probe.py $dry --out "$out/probe-v2" \
             --only v2,profile --shapes "$v2_probe_shapes" \
             2>&1 | tee "$out/gpu_v2_probe.txt" ;;
    rule) cuda_tests ${RULE_TESTS_TIMEOUT:-90} "$out/gpu_rule_tests.txt"
        rule_bench ${RULE_BENCH_TIMEOUT:-300} ;;
    check) cuda_tests ${CHECK_TESTS_TIMEOUT:-60} "$out/gpu_tests.txt"
        SEPCONV_TRITON_CHILD=1 SEPCONV_KERNEL= SEPCONV_TRITON_AUTOTUNE=0 \
          timeout ${CHECK_V2_TESTS_TIMEOUT:-200} python -m pytest -q -p no:cacheprovider \
             -o addopts= $xdist --noconftest tests/test_kernel_triton.py -k "v2 or variant or pick or launch" \
             --tb=line -rf 2>&1 | tail -n 40 | tee -a "$out/gpu_tests.txt"
        if [ "${CHECK_HOST:-1}" = 1 ]; then
          timeout ${CHECK_HOST_TIMEOUT:-60} python bench/host_profile.py $dry \
               --out "$out/host_profile.txt" > /dev/null 2>&1
        fi
        rule_bench ${CHECK_BENCH_TIMEOUT:-260}
        rm -f "$out/gpu-rule.png"  # (a device run brings back 8 files at most)
        if [ "${CHECK_PROBE:-1}" = 1 ]; then
          timeout ${CHECK_PROBE_TIMEOUT:-100} python bench/gpu_probe.py $dry --out "$out/probe" \
               --only ${CHECK_PROBE_PARTS:-v2} --shapes "$check_probe_shapes" \
               ${CHECK_PROBE_ARGS:---v2-switches-only} \
               2>&1 | tee "$out/gpu_probe.txt"
          # then where a training step's GPU time goes, kernel by kernel (appended: a
          # device run brings back 8 files at most)
          timeout ${CHECK_PROFILE_TIMEOUT:-60} python bench/gpu_probe.py $dry \
               --out "$out/probe-profile" --only profile --shapes "$check_profile_shapes" \
               2>&1 | tee -a "$out/gpu_probe.txt"
        fi ;;
    *) echo "unknown part $part (tests, bench, probe, v2, rule, check)"; exit 2 ;;
  esac
done
