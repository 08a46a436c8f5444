"""Where the fused Triton kernel's time goes on a GPU, and what CUDA graphs give the layer.

    python bench/gpu_probe.py --out DIR          # on a CUDA machine, a few minutes
    python bench/gpu_probe.py --dry-run          # anywhere: the interpreter, tiny shapes

Issue 12, part 2.  Four measurements, each printed as a table and written to
``DIR/probe.json`` (rewritten after every row, so a run cut short keeps what it measured):

1. ``parts``: the forward kernel with fixed tile configs (no autotuning) and, in float32,
   two dot precisions (``ieee``: plain float32 FMA; ``tf32x3``: three TF32 tensor-core
   products, about float32's accuracy), against the pieces of the composition it
   replaces: cuDNN's depthwise alone, cuBLAS' GEMM alone, and the whole composition
   (``kernels/cuda.py``).  Error: max |y - y64| / max |y64| against a float64 reference.
2. ``profile``: torch.profiler's per-kernel CUDA time of one forward + backward step, the
   Triton kernels (fixed configs) and the composition side by side.
3. ``graphs``: ``SeparableConv1D`` forward + backward eager and replayed from a CUDA graph
   (``torch.cuda.make_graphed_callables``): the per-call host overhead a graph removes.
4. ``compile``: ``torch.compile(layer, mode="reduce-overhead")`` runs through the layer
   (one small shape; compile time reported, not counted).
5. ``v2``: ``kernels/triton_v2.py``'s tiles (``PICKS``; the d(depthwise) ones were chosen
   from this part's run of 2026-11-27, ``bench/gpu-h200-20261127-s15-probe.json``): the
   forward fused with one filter block per tile against its unfused path (depthwise kernel
   + cuBLAS); per tile, each kernel of ``DEPTHWISE_KERNELS`` alone (error against the
   reference's float64 depthwise step), ``dz`` (cuBLAS) alone, and each kernel of
   ``DW_KERNELS`` alone (``dz`` made once outside the timed call; error against the
   reference's float64 d(depthwise)).  First, at the default tiles: the interior tiles
   (``triton_v2.INTERIOR``, on by default) against the masked tiles alone, per kernel
   (depthwise, d(depthwise) rows_once, dx) and for the forward as dispatched, and the
   fused forward's own switch (``FUSED_INTERIOR``, 16-bit only by default); ``--v2-switches-only``
   stops there.
   ``profile`` also profiles variant 2 beside variant 1.
"""


from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from gpu import Shape, make_inputs  # bench/gpu.py: the script's folder is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, batch, steps, channels, filters, kernel, stride, dilation, multiplier, padding)
SHAPES = [
    ("quartznet_b5", 32, 1024, 512, 512, 75, 1, 1, 1, "same"),
    ("matchboxnet_kws", 256, 100, 64, 64, 13, 1, 1, 1, "same"),
    ("conformer_conv", 64, 250, 256, 256, 31, 1, 1, 1, "same"),
    ("causal_stream_128", 64, 2048, 128, 128, 4, 1, 1, 1, "causal"),
    ("causal_stream_1536", 16, 2048, 1536, 1536, 4, 1, 1, 1, "causal"),
    ("long-256-k31", 64, 4096, 256, 256, 31, 1, 1, 1, "same"),
    # bench/gpu.py's multiplier_2: a training step of variant 2 took 0.25-0.4 ms more when
    # z was recomputed in the backward than when kept (three H200 runs, 2026-11-27), as if
    # the depthwise step of a depth multiplier cost ~0.3 ms on 4096 rows (k9; 262144 rows
    # of k31 without a multiplier: 0.4 ms): the profile says which kernel it is
    ("multiplier_2", 16, 256, 128, 128, 9, 1, 1, 2, "same"),
    # one stream at batch 1 (fused forward: 16 row blocks of 4 x 31 serial tap steps)
    ("stream_b1_k31", 1, 1000, 128, 128, 31, 1, 1, 1, "causal"),
]
DRY_SHAPES = [("tiny", 2, 37, 8, 16, 5, 1, 1, 1, "same")]
# (BLOCK_R, BLOCK_J, BLOCK_F, num_warps, num_stages)
FWD_CONFIGS = [(64, 32, 64, 4, 3), (128, 32, 128, 8, 3), (64, 32, 256, 8, 2),
               (128, 64, 128, 8, 2), (128, 16, 256, 8, 2)]
DRY_FWD_CONFIGS = [(16, 16, 16, 4, 1)]
# variant 2 tiles: fused forward (BLOCK_R, BLOCK_J, warps, stages; BLOCK_F from F), the
# depthwise kernel (BLOCK_R, BLOCK_J, warps, stages), d(depthwise) partials (+ BLOCK_K)
# num_stages 1 beside 2-3: with a software-pipelined tap loop Triton may turn the x loads
# into asynchronous copies that skip L1, so each of the K shifted tiles (which overlap in
# all but one row) would come from L2; unpipelined loads can hit L1.  (Fused tiles only
# where the dispatcher fuses, F <= 128: 256 and 512 lost to the unfused path in 2026-11-27's probe.)
V2_FUSED_TILES = [(64, 32, 8, 2), (64, 32, 4, 1), (128, 32, 8, 1)]
V2_DEPTHWISE_TILES = [(64, 64, 8, 2), (32, 128, 8, 2), (64, 64, 8, 1), (32, 128, 8, 1),
                      (64, 64, 4, 1)]
# d(depthwise), (BLOCK_R, BLOCK_J, warps, stages, BLOCK_K): _dw_partials_kernel (per_tile:
# the fastest tile of 2026-11-27's first probe, with 2 and 1 stages) and
# _dw_rows_once_kernel (32 float32 accumulators per thread, BLOCK_K 4/8, no spills under
# ptxas for sm_90a; its PICKS are the second and third).  Each tile compiles once per
# dtype and shape: keep the lists short.
V2_DW_TILES = [(64, 32, 4, 2, 4), (64, 32, 4, 1, 4)]
V2_DW_ROWS_ONCE_TILES = [(32, 64, 8, 2, 4), (32, 32, 4, 2, 4), (16, 64, 8, 2, 8),
                         (32, 64, 8, 1, 4)]
# the depthwise step by _depthwise_unrolled_kernel (BLOCK_R, BLOCK_J, warps, stages, UNROLL)
V2_DEPTHWISE_UNROLLED_TILES = [(64, 64, 8, 2, 4), (64, 64, 8, 1, 4)]
DRY_V2 = ([(16, 16, 4, 1)], [(16, 16, 4, 1)], [(16, 16, 4, 1, 2)], [(16, 16, 4, 1, 2)],
          [(16, 16, 4, 1, 2)])


class Fixed:
    """Stands in for an autotuned kernel: ``kernel[grid](...)`` with one fixed config."""

    def __init__(self, kernel, **config):
        self.kernel, self.config = kernel, config

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.kernel[grid](*args, **kwargs, **self.config)


def _record(rows, save, bench, shape_name, dtype, what, fn, y64, scale, check, width):
    """Time ``fn`` (and, with ``check``, its error against ``y64`` relative to ``scale``),
    append the row to ``rows``, print it and save the report; a config or tile that does
    not compile is recorded as FAILED and the probe goes on."""
    import torch
    try:
        with torch.no_grad():
            out = fn()
            err = (out.double() - y64).abs().max().item() / scale if check else float("nan")
            ms = bench(fn)
    except Exception as exc:
        ms, err = float("nan"), float("nan")
        what += f" FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
    rows.append({"shape": shape_name, "dtype": str(dtype)[6:], "what": what, "ms": ms,
                 "err": err})
    print(f"{shape_name:20s} {str(dtype)[6:]:9s} {what:{width}s} {ms:8.3f} {err:9.1e}",
          flush=True)
    save()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "probe"))
    ap.add_argument("--only", default="",
                    help="comma list of parts: parts,profile,graphs,compile,v2")
    ap.add_argument("--v2-switches-only", action="store_true",
                    help="v2 part: only the interior / masked-only rows (no tile sweeps)")
    ap.add_argument("--shapes", default="",
                    help="comma list of substrings: shapes whose name contains one")
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from sepconv import padding
    from sepconv.kernels import cuda, reference
    from sepconv.kernels import triton_sepconv as T

    dev = torch.device("cpu" if args.dry_run else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    report = {"device": "interpreter" if args.dry_run else torch.cuda.get_device_name(),
              "torch": torch.__version__, "triton": __import__("triton").__version__,
              "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "parts": [], "profile": {}, "graphs": [], "compile": []}
    parts = set((args.only or "parts,profile,graphs,compile,v2").split(","))
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    wanted = [w for w in args.shapes.split(",") if w]
    if wanted:
        shapes = [sh for sh in shapes if any(w in sh[0] for w in wanted)]
    report["v2"] = []
    fwd_configs = DRY_FWD_CONFIGS if args.dry_run else FWD_CONFIGS

    def save():
        with open(os.path.join(args.out, "probe.json"), "w") as fh:
            json.dump(report, fh, indent=1)

    def bench(fn):
        if args.dry_run:
            fn()
            return float("nan")
        import triton.testing
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

    def inputs(shape, dtype, grad=False):
        return [t.requires_grad_(grad) for t in make_inputs(torch, Shape(*shape), dtype, dev)]

    def geometry(shape):
        _, b, l, c, f, k, s, d, m, pad = shape
        left, right = padding.padding_amounts(l, k, s, d, pad)
        return dict(stride=s, dilation=d, pad_left=left, pad_right=right, channels_last=True)

    dtypes = [torch.float32, torch.bfloat16]

    # 1. forward: Triton configs / precisions against the composition's pieces -------------
    if "parts" in parts:
        print("\n# forward, ms (median, triton.testing.do_bench); err = max|y-y64|/max|y64|")
        print(f"{'shape':20s} {'dtype':9s} {'what':34s} {'ms':>8s} {'err':>9s}")
        for shape in shapes:
            kw = geometry(shape)
            for dtype in dtypes:
                x, w, p, bias = inputs(shape, dtype)
                with torch.no_grad():
                    y64 = reference.separable_conv1d(*(t.double() for t in (x, w, p, bias)),
                                                     **kw)
                scale = y64.abs().max().item()

                def row(what, fn):
                    _record(report["parts"], save, bench, shape[0], dtype, what, fn, y64,
                            scale, check=True, width=34)

                row("composition (kernels/cuda.py)", lambda: cuda.separable_conv1d(x, w, p, bias,
                                                                                   **kw))
                _, b, l, c, f, k, s, d, m, pad = shape
                # the depthwise step of cuda.nhwc_mm: asymmetric padding pads the steps of x
                x4 = x.transpose(1, 2).unsqueeze(2)
                padl = kw["pad_left"]
                if kw["pad_left"] != kw["pad_right"]:
                    x4 = torch.nn.functional.pad(x, (0, 0, padl, kw["pad_right"]))
                    x4, padl = x4.transpose(1, 2).unsqueeze(2), 0
                wt = cuda._depthwise_weight(w).unsqueeze(2)
                if not args.dry_run:
                    ms = bench(lambda: torch.nn.functional.conv2d(x4, wt, None, (1, s), (0, padl),
                                                                  (1, d), c))
                    z = torch.randn(b * l, c * m, device=dev, dtype=dtype)
                    ms2 = bench(lambda: torch.addmm(bias, z, p))
                    for what, t in (("cudnn depthwise alone", ms), ("cublas addmm alone", ms2)):
                        report["parts"].append({"shape": shape[0], "dtype": str(dtype)[6:],
                                                "what": what, "ms": t, "err": 0.0})
                        print(f"{shape[0]:20s} {str(dtype)[6:]:9s} {what:34s} {t:8.3f}")
                precisions = ["ieee", "tf32x3"] if dtype == torch.float32 else ["bf16"]
                for prec in precisions:
                    for cfg in fwd_configs:
                        br, bj, bf, nw, ns = cfg
                        T._fwd = Fixed(T._fwd_kernel, BLOCK_R=br, BLOCK_J=bj, BLOCK_F=bf,
                                       num_warps=nw, num_stages=ns)
                        T._precision = (lambda dt, prec=prec: prec if prec != "bf16" else "tf32")
                        row(f"triton {prec} {cfg}",
                            lambda: T._forward(x, w.reshape(w.shape[0], -1).contiguous(), p, bias,
                                               kw["stride"], kw["dilation"], kw["pad_left"],
                                               kw["pad_right"], True))

    # 2. per-kernel profile of one forward + backward step -----------------------------------
    if "profile" in parts and not args.dry_run:
        from torch.profiler import ProfilerActivity, profile
        T._fwd = Fixed(T._fwd_kernel, BLOCK_R=64, BLOCK_J=32, BLOCK_F=128, num_warps=8,
                       num_stages=3)
        T._bwd_dz_dw = Fixed(T._bwd_dz_dw_kernel, BLOCK_R=64, BLOCK_J=32, BLOCK_F=64,
                             num_warps=4, num_stages=3)
        T._bwd_dx = Fixed(T._bwd_dx_kernel, BLOCK_I=64, BLOCK_C=64, num_warps=4, num_stages=2)
        T._bwd_dp = Fixed(T._bwd_dp_kernel, BLOCK_R=64, BLOCK_J=32, BLOCK_F=64, num_warps=8,
                          num_stages=3)
        T._precision = lambda dt: "ieee" if dt == torch.float32 else "tf32"
        from sepconv.kernels import triton_v2
        for shape in (shapes if wanted else [shapes[0], shapes[3], shapes[4]]):
            kw = geometry(shape)
            for dtype in dtypes:
                for name, fn in (("triton", T.separable_conv1d),
                                 ("triton_v2", triton_v2.separable_conv1d),
                                 ("composition", cuda.separable_conv1d)):
                    leaves = inputs(shape, dtype, grad=True)
                    dy = torch.randn_like(fn(*leaves, **kw))

                    def step():
                        for t in leaves:
                            t.grad = None
                        fn(*leaves, **kw).backward(dy)

                    for _ in range(3):
                        step()
                    torch.cuda.synchronize()
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(5):
                            step()
                        torch.cuda.synchronize()
                    rows = []
                    for e in prof.key_averages():
                        t = getattr(e, "device_time_total", 0)
                        if t > 0:
                            rows.append((e.key[:70], t / 5 / 1e3, e.count / 5))
                    rows.sort(key=lambda r: -r[1])
                    key = f"{shape[0]} {str(dtype)[6:]} {name}"
                    report["profile"][key] = rows
                    total = sum(r[1] for r in rows)
                    print(f"\n# profile {key}: {total:.3f} ms of kernels per step, "
                          f"{sum(r[2] for r in rows):.0f} launches")
                    for r in rows[:8]:
                        print(f"   {r[1]:8.3f} ms  x{r[2]:4.1f}  {r[0]}")
                    save()

    # 3. the layer eager vs replayed from a CUDA graph --------------------------------------
    if "graphs" in parts and not args.dry_run:
        import sepconv
        print("\n# SeparableConv1D fwd+bwd, ms: eager layer / kernel call alone / CUDA graph")
        for shape in shapes[:4]:
            _, b, l, c, f, k, s, d, m, pad = shape
            for dtype in dtypes:
                try:
                    layer = sepconv.SeparableConv1D(f, k, strides=s, padding=pad,
                                                    dilation_rate=d, depth_multiplier=m,
                                                    input_shape=(l, c),
                                                    dtype=str(dtype)[6:]).to(dev)
                    x = torch.randn(b, l, c, device=dev, dtype=dtype, requires_grad=True)
                    dy = torch.randn_like(layer(x))

                    def eager():
                        layer(x).backward(dy)

                    graphed = torch.cuda.make_graphed_callables(layer, (x,))

                    def replay():
                        graphed(x).backward(dy)

                    with torch.no_grad():
                        same = torch.equal(graphed(x), layer(x))
                    t_e, t_g = bench(eager), bench(replay)
                    kw = geometry(shape)
                    args_k = [x, layer.depthwise_kernel, layer.pointwise_kernel.reshape(c * m, f),
                              layer.bias]
                    t_k = bench(lambda: cuda.separable_conv1d(*args_k, **kw).backward(dy))
                    report["graphs"].append({"shape": shape[0], "dtype": str(dtype)[6:],
                                             "eager_ms": t_e, "kernel_ms": t_k,
                                             "graph_ms": t_g, "graph_equal": same})
                    print(f"{shape[0]:20s} {str(dtype)[6:]:9s} {t_e:8.3f} {t_k:8.3f} {t_g:8.3f}"
                          f"  graph output equal: {same}", flush=True)
                except Exception:
                    traceback.print_exc()
                    report["graphs"].append({"shape": shape[0], "dtype": str(dtype)[6:],
                                             "error": traceback.format_exc()[-500:]})
                save()

    # 4. torch.compile through the layer ------------------------------------------------------
    if "compile" in parts and not args.dry_run:
        import sepconv
        shape = shapes[1]
        _, b, l, c, f, k, s, d, m, pad = shape
        try:
            layer = sepconv.SeparableConv1D(f, k, padding=pad, input_shape=(l, c)).to(dev)
            x = torch.randn(b, l, c, device=dev, requires_grad=True)
            for mode in ("default", "reduce-overhead"):
                compiled = torch.compile(layer, mode=mode)
                if mode == "default":  # training: forward + backward
                    step = lambda: compiled(x).sum().backward()
                    eager = lambda: layer(x).sum().backward()
                else:  # inference: CUDA graphs replayed by torch.compile
                    def step():
                        with torch.no_grad():
                            return compiled(x).clone()

                    def eager():
                        with torch.no_grad():
                            return layer(x)
                t0 = time.perf_counter()
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                t_compile = time.perf_counter() - t0
                with torch.no_grad():
                    err = (compiled(x).clone() - layer(x)).abs().max().item()
                t_c, t_e = bench(step), bench(eager)
                report["compile"].append({"shape": shape[0], "mode": mode, "err": err,
                                          "compile_s": t_compile, "compiled_ms": t_c,
                                          "eager_ms": t_e})
                print(f"\n# torch.compile mode={mode} {shape[0]} fp32 "
                      f"{'fwd+bwd' if mode == 'default' else 'fwd'}: compiled {t_c:.3f} ms, "
                      f"eager {t_e:.3f} ms, first 3 calls {t_compile:.1f} s, max diff {err:.1e}")
        except Exception:
            traceback.print_exc()
            report["compile"].append({"error": traceback.format_exc()[-800:]})
        save()
    # 5. variant 2's tiles ------------------------------------------------------------------
    if "v2" in parts:
        probe_v2(torch, args, report, shapes, dtypes, inputs, geometry, bench, save)
    save()  # (also when every part asked for was skipped: a dry run of the profile)
    print(f"\nwrote {os.path.join(args.out, 'probe.json')}")
    return 0


def probe_v2(torch, args, report, shapes, dtypes, inputs, geometry, bench, save):
    """Time variant 2's kernels per tile (``triton_v2.PICKS`` patched per row, restored)."""
    import copy

    import triton
    from sepconv.kernels import reference
    from sepconv.padding import padded_output_length
    from sepconv.kernels import triton_v2 as V

    fused_tiles, depthwise_tiles, dw_tiles, rows_once_tiles, unrolled_tiles = (
        DRY_V2 if args.dry_run else
        (V2_FUSED_TILES, V2_DEPTHWISE_TILES, V2_DW_TILES, V2_DW_ROWS_ONCE_TILES,
         V2_DEPTHWISE_UNROLLED_TILES))
    print("\n# variant 2, ms (median); err = max|out-out64|/max|out64| against the "
          "reference in float64: y (forward rows), z (depthwise rows), d(depthwise)")
    for shape in shapes:
        _, b, l, c, f, k, s, d, m, pad = shape
        kw = geometry(shape)
        left, right = kw["pad_left"], kw["pad_right"]
        l_out = padded_output_length(l, k, s, d, left, right)
        for dtype in dtypes:
            x, w, p, bias = inputs(shape, dtype)
            w2 = w.reshape(k, -1).contiguous()
            with torch.no_grad():
                y64 = reference.separable_conv1d(*(t.double() for t in (x, w, p, bias)), **kw)
            scale = y64.abs().max().item()
            dy = torch.randn(b, l_out, f, device=x.device, dtype=dtype)
            z = torch.empty(b, l_out, c * m, device=x.device, dtype=dtype)
            saved = (V.FUSED_MAX_F, copy.deepcopy(V.PICKS), V.INTERIOR, V.FUSED_INTERIOR)

            def row(what, fn, check=False):
                _record(report["v2"], save, bench, shape[0], dtype, what, fn, y64, scale,
                        check=check, width=44)

            # d(depthwise) alone: dz = dy @ p^T made once (cuBLAS, x's dtype, as in the
            # backward), the reference's float64 gradient from the same dy
            leaves = [t.double().requires_grad_() for t in (x, w, p)]
            reference.separable_conv1d(*leaves, bias.double(), **kw).backward(dy.double())
            dw64 = leaves[1].grad.reshape(k, -1)
            dw_scale = dw64.abs().max().item()
            dx64, dx_scale = leaves[0].grad, leaves[0].grad.abs().max().item()
            del leaves
            with torch.no_grad():
                dz = torch.mm(dy.reshape(-1, f), p.t())

            # the depthwise step alone: the reference with an identity pointwise
            with torch.no_grad():
                eye = torch.eye(c * m, device=x.device, dtype=torch.float64)
                z64 = reference.separable_conv1d(x.double(), w.double(), eye, None, **kw)
            z_scale = z64.abs().max().item()

            def z_row(what, kernel):
                _record(report["v2"], save, bench, shape[0], dtype, what,
                        lambda: V._depthwise(x, w2, s, d, left, l_out, True, z, kernel),
                        z64, z_scale, check=True, width=44)

            def dw_row(kernel, blocks, key):
                br, bj, nw, ns, bk = blocks
                for name in (key, key + "_long") if key == "dw_rows_once" else (key,):
                    V.PICKS[name] = V._cfg(nw, ns, BLOCK_R=br, BLOCK_J=bj, BLOCK_K=bk)
                V._clear_plans()  # (launches are planned once per signature: re-plan)
                _record(report["v2"], save, bench, shape[0], dtype,
                        f"d(depthwise) {kernel} {blocks}",
                        lambda: V._depthwise_grad(x, dz, k, s, d, left, l_out, True, kernel),
                        dw64, dw_scale, check=True, width=44)

            forward = lambda want_z=False: V._forward(x, w2, p, bias, s, d, left, right, True,
                                                      want_z)[0]

            def dx_alone():  # variant 1's dx kernel on dz, as variant 2's backward runs it
                dx = torch.empty_like(x)
                grid, ints, consts, warps, stages, compiled = V._dx_plan(
                    x.shape, x.stride(), dy.shape, dy.stride(), c * m, k, s, d, left, True)
                V._fast.launch(V._v1._bwd_dx_kernel, grid, (dz, w2, dx) + ints, consts, warps,
                               stages, compiled)
                return dx

            try:
                # first (a run cut short keeps them): the interior tiles (INTERIOR, the
                # default) against the masked tiles alone, at the default tiles, each
                # kernel alone and the forward as dispatched; FUSED_INTERIOR on its own
                for interior, fused_interior, tag in (
                        (True, "auto", "interior"), (False, "auto", "masked only"),
                        (True, True, "fused interior, float32 too")):
                    V.INTERIOR, V.FUSED_INTERIOR = interior, fused_interior
                    V._clear_plans()
                    row(f"forward as dispatched, {tag}", forward, True)
                    if fused_interior is True:  # (the forward alone)
                        continue
                    z_row(f"depthwise alone, {tag}", "rows")
                    _record(report["v2"], save, bench, shape[0], dtype,
                            f"d(depthwise) rows_once alone, {tag}",
                            lambda: V._depthwise_grad(x, dz, k, s, d, left, l_out, True,
                                                      "rows_once"),
                            dw64, dw_scale, check=True, width=44)
                    _record(report["v2"], save, bench, shape[0], dtype, f"dx alone, {tag}",
                            dx_alone, dx64, dx_scale, check=True, width=44)
                V.INTERIOR, V.FUSED_INTERIOR = saved[2], saved[3]
                V._clear_plans()
                if args.v2_switches_only:
                    continue
                block_f = max(16, triton.next_power_of_2(f))
                if block_f <= (512 if args.dry_run else 128):
                    V.FUSED_MAX_F = 512
                    for br, bj, nw, ns in fused_tiles:
                        V.PICKS["fused"][block_f] = V._cfg(nw, ns, BLOCK_R=br, BLOCK_J=bj)
                        V._clear_plans()
                        row(f"fused BLOCK_F={block_f} {(br, bj, nw, ns)}", forward, True)
                        if dtype != torch.float32 and args.dry_run:  # (measured 2026-11-27)
                            row(f"fused+z BLOCK_F={block_f} {(br, bj, nw, ns)}",
                                lambda: forward(True), True)
                V.FUSED_MAX_F = 0
                row("depthwise kernel + cuBLAS", forward, True)
                for br, bj, nw, ns in depthwise_tiles:
                    V.PICKS["depthwise"] = V._cfg(nw, ns, BLOCK_R=br, BLOCK_J=bj)
                    V._clear_plans()
                    z_row(f"depthwise alone {(br, bj, nw, ns)}", "rows")
                for br, bj, nw, ns, unroll in unrolled_tiles:
                    V.PICKS["depthwise_unrolled"] = V._cfg(nw, ns, BLOCK_R=br, BLOCK_J=bj,
                                                           UNROLL=unroll)
                    V._clear_plans()
                    z_row(f"depthwise unrolled alone {(br, bj, nw, ns, unroll)}", "unrolled")
                row("cuBLAS dz = dy @ p^T alone", lambda: torch.mm(dy.reshape(-1, f), p.t()))
                # (BLOCK_R, BLOCK_J, warps, stages, BLOCK_K); each row is the kernel and
                # torch's sum of its float32 partials, without the dz GEMM above
                for blocks in dw_tiles:
                    dw_row("per_tile", blocks, "dw")
                for blocks in rows_once_tiles:
                    dw_row("rows_once", blocks, "dw_rows_once")
            finally:
                V.FUSED_MAX_F, V.PICKS, V.INTERIOR, V.FUSED_INTERIOR = saved
                V._clear_plans()


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    sys.exit(main())
