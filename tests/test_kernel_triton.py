"""The fused Triton kernel against the reference kernel, forward and backward.

There is no GPU in CI, so the kernels run in Triton's interpreter on CPU tensors.  Two
facts make that delicate inside one pytest process:

- ``TRITON_INTERPRET=1`` must be set before ``triton`` is imported, and the kernel
  module reads it at import time;
- other test modules import TensorFlow, and importing triton *after* TensorFlow
  aborts the process (both register the same LLVM command-line options).

So this module runs in two roles.  In the pytest process that collects the whole suite,
it defines a test that starts a fresh interpreter (``sys.executable -m pytest`` on this
very file, with ``--noconftest`` so no conftest can import TensorFlow first) with
``TRITON_INTERPRET=1`` and ``SEPCONV_TRITON_CHILD=1`` in its environment, and fails with
the child's report if any child test fails.  In that child, the module defines the real,
parametrized tests.  The outcome no longer depends on import order or on which other
test files were collected.  The parent also compiles every kernel for sm_90 (no GPU
needed) and runs ``bench/gpu.py --dry-run``; on a machine with CUDA it starts the same
child without the interpreter, so the cases run on the GPU too.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

CHILD = os.environ.get("SEPCONV_TRITON_CHILD") == "1"

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (it is a Linux x86_64-only test extra)",
                allow_module_level=True)


if not CHILD:

    def test_triton_kernel_under_interpreter():
        """Run the cases below in a child process under ``TRITON_INTERPRET=1``."""
        env = dict(os.environ, TRITON_INTERPRET="1", SEPCONV_TRITON_CHILD="1",
                   SEPCONV_KERNEL="")
        cmd = [sys.executable, "-m", "pytest", __file__, "-q", "--noconftest",
               "-p", "no:cacheprovider", "-o", "addopts=", "--maxfail=5", "--tb=short"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        report = (proc.stdout + proc.stderr)[-12000:]
        if proc.returncode == 5:
            pytest.fail("the child collected no tests:\n" + report)
        assert proc.returncode == 0, "Triton interpreter tests failed:\n" + report

    def _cuda_available() -> bool:
        import torch  # torch alone never imports triton
        return torch.cuda.is_available()

    @pytest.mark.parametrize("autotune", ["0", "1"])
    def test_triton_kernel_on_cuda(autotune):
        """On a CUDA machine, the same cases on the GPU: every case with one fixed config
        (autotuning each of ~80 shapes would take minutes), and a few with autotuning
        (its trial runs must leave the atomically accumulated d(depthwise) intact)."""
        if not _cuda_available():
            pytest.skip("no CUDA device: the interpreter test covers the kernels' logic")
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.update(SEPCONV_TRITON_CHILD="1", SEPCONV_KERNEL="", SEPCONV_TRITON_AUTOTUNE=autotune)
        cmd = [sys.executable, "-m", "pytest", __file__, "-q", "--noconftest",
               "-p", "no:cacheprovider", "-o", "addopts=", "--maxfail=5", "--tb=short"]
        if autotune == "1":
            cmd += ["-k", "float32_matches_reference and same or half_precision or row_splits"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        report = (proc.stdout + proc.stderr)[-12000:]
        assert proc.returncode == 0, "Triton CUDA tests failed:\n" + report

    # The interpreter runs kernels as numpy code: it accepts things the GPU compiler
    # rejects (tile shapes tl.dot cannot take, type mismatches in loops).  Compiling
    # every kernel for an H100 / H200 (sm_90a) needs no GPU, only the ptxas in triton's
    # wheel: bench/ptx_report.py does, at the tiles the kernels run with, and with
    # --check fails when a tile variant 2 runs by default spills registers.
    def test_kernels_compile_for_sm90(tmp_path):
        # No `import triton` in this process (TensorFlow may be loaded): metadata only.
        from importlib.metadata import version as dist_version
        have = dist_version("triton")
        if tuple(int(v) for v in have.split(".")[:2]) < (3, 3):
            pytest.skip(f"ASTSource takes named signatures from triton 3.3; have {have}")
        root = importlib.util.find_spec("triton").submodule_search_locations[0]
        ptxas = os.path.join(root, "backends", "nvidia", "bin", "ptxas")
        if not os.path.exists(ptxas):
            pytest.skip("triton's wheel ships no ptxas here (not the CUDA backend)")
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(tmp_path)
        tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "bench", "ptx_report.py")
        proc = subprocess.run([sys.executable, tool, "--check", "--json",
                               str(tmp_path / "ptx.json")],
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
        import json
        rows = json.loads((tmp_path / "ptx.json").read_text())["rows"]
        # variant 1's five tiles, variant 2's six kernels and six fused tiles, two dtypes
        assert len(rows) == 2 * (5 + 6 + 6), proc.stdout
        assert all(r["regs"] for r in rows), proc.stdout
        # the tap loops were found and hold the products (a parser that finds nothing
        # would pass the spill check vacuously)
        loops = {(r["kernel"], r["dtype"]): r for r in rows}
        for dtype in ("fp32", "bf16"):
            assert loops[("v2 depthwise", dtype)]["fma"] > 0, proc.stdout
            assert loops[("v2 dw rows_once_long", dtype)]["fma"] > 0, proc.stdout

    def test_gpu_bench_dry_run(tmp_path):
        # bench/gpu.py's own logic (compositions checked against the reference, timing,
        # table, JSON, PNG) on tiny shapes under the interpreter; its GPU numbers need a GPU.
        bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "bench", "gpu.py")
        out = tmp_path / "dry"
        env = {k: v for k, v in os.environ.items() if k != "SEPCONV_KERNEL"}
        proc = subprocess.run([sys.executable, bench, "--dry-run", "--dtypes", "float32,bfloat16",
                               "--reps", "1", "--warmup", "0", "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
        import json
        report = json.loads(out.with_suffix(".json").read_text())
        assert report["machine"]["dry_run"] is True
        assert {(r["dtype"], r["phase"]) for r in report["rows"]} == {
            (d, p) for d in ("float32", "bfloat16") for p in ("fwd", "fwd+bwd")}
        assert report["machine"]["variants"] == ["triton", "triton_v2", "triton_v2_savez"]
        for row in report["rows"]:
            tol = 1e-4 if row["dtype"] == "float32" else 0.1
            for key in ("max_abs_err_vs_fp64", "v2_max_abs_err_vs_fp64",
                        "v2s_max_abs_err_vs_fp64", "max_rel_grad_err_vs_fp64",
                        "v2_max_rel_grad_err_vs_fp64", "v2s_max_rel_grad_err_vs_fp64"):
                assert row[key] < tol, (row["shape"], key)
            assert row["triton_v2_ms"] > 0 and row["triton_v2_savez_ms"] > 0
        assert out.with_suffix(".png").stat().st_size > 0
        # bench/gpu_probe.py's variant 2 tiles (what the GPU session's `v2` part runs)
        probe = os.path.join(os.path.dirname(bench), "gpu_probe.py")
        proc = subprocess.run([sys.executable, probe, "--dry-run", "--only", "v2",
                               "--out", str(tmp_path / "probe")],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
        rows = json.loads((tmp_path / "probe" / "probe.json").read_text())["v2"]
        # per dtype: 9 rows of the switches (interior tiles or not), 7 of tiles; bfloat16
        # one more (the fused forward storing z)
        assert len(rows) == 2 * (9 + 7) + 1 and not any("FAILED" in r["what"] for r in rows), rows
        assert sum("masked only" in r["what"] for r in rows) == 2 * 4
        assert sum(r["what"].startswith(("d(depthwise) rows_once (", "depthwise unrolled"))
                   for r in rows) == 4
        for row in rows:
            if not row["what"].startswith("cuBLAS"):  # every other row is checked
                assert row["err"] < (1e-5 if row["dtype"] == "float32" else 2e-2), row

else:
    import itertools

    import torch

    from sepconv import functional, padding
    from sepconv.kernels import reference
    from sepconv.kernels import triton_sepconv

    # Under the interpreter the kernels take CPU tensors; without it (the CUDA runs
    # started above) the same cases run on the GPU.
    DEVICE = torch.device("cpu" if triton_sepconv.INTERPRET else "cuda")

    @pytest.fixture(autouse=True)
    def _ieee_float32(monkeypatch):
        """float32 cases in IEEE float32 on a GPU too: variant 2's products follow cuDNN's
        TF32 flag (True by default), which test_v2_products_follow_cudnn_tf32 checks."""
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    def _case(batch, length, channels, multiplier, filters, kernel_size, stride, dilation,
              pad, channels_last, bias, dtype=torch.float32, seed=0):
        """Inputs at unit scale (weights scaled by 1/sqrt(fan-in)) and Keras padding."""
        gen = torch.Generator().manual_seed(seed)
        shape = (batch, length, channels) if channels_last else (batch, channels, length)
        x = torch.randn(shape, generator=gen)
        w = torch.randn(kernel_size, channels, multiplier, generator=gen) / kernel_size ** 0.5
        cm = channels * multiplier
        p = torch.randn(cm, filters, generator=gen) / cm ** 0.5
        b = torch.randn(filters, generator=gen) if bias else None
        left, right = padding.padding_amounts(length, kernel_size, stride, dilation, pad)
        kw = dict(stride=stride, dilation=dilation, pad_left=left, pad_right=right,
                  channels_last=channels_last)
        return [t.to(device=DEVICE, dtype=dtype) if t is not None else None
                for t in (x, w, p, b)], kw

    @pytest.fixture
    def force_int64(monkeypatch):
        """Call it for int64 offsets (what tensors past 2**30 elements get) on small
        tensors: the span threshold at 0, variant 2's remembered launches forgotten (and
        forgotten again after the test)."""
        from sepconv.kernels import triton_v2

        def force():
            monkeypatch.setattr(triton_sepconv, "INT64_SPAN", 0)
            triton_v2._clear_plans()
        yield force
        triton_v2._clear_plans()

    def _run(kernel, tensors, kw, grad_out_seed=1, dtype=None):
        """Output and gradients of every tensor input, for a fixed random ``dy``."""
        leaves = [t.detach().clone().requires_grad_() if t is not None else None
                  for t in tensors]
        if dtype is not None:  # the reference in float64, from the same rounded inputs
            inputs = [t.to(dtype) if t is not None else None for t in leaves]
        else:
            inputs = leaves
        y = kernel(*inputs, **kw)
        gen = torch.Generator().manual_seed(grad_out_seed)
        dy = torch.randn(y.shape, generator=gen).to(y)
        y.backward(dy)
        return [y.detach()] + [t.grad for t in leaves if t is not None]

    def _check(tensors, kw, rtol, atol, kernel=None):
        got = _run(kernel or triton_sepconv.separable_conv1d, tensors, kw)
        want = _run(reference.separable_conv1d, tensors, kw, dtype=torch.float64)
        names = ["y", "dx", "d_depthwise", "d_pointwise", "d_bias"]
        for name, g, w in zip(names, got, want):
            assert g.dtype == tensors[0].dtype and g.shape == w.shape, name
            scale = max(1.0, w.double().abs().max().item())
            torch.testing.assert_close(g.double(), w.double(), rtol=rtol, atol=atol * scale,
                                       msg=lambda m, name=name: f"{name}: {m}")

    # Every padding x stride x dilation x multiplier, alternating layout and bias so
    # both values of each meet every other axis.  Odd lengths; 5 channels x M spans
    # several 16-wide channel blocks, 20 filters several filter blocks, 2 x 23 rows
    # straddle the 32-row blocks and the two sequences.
    GRID = [(pad, s, d, m) for pad, s, d, m in itertools.product(
        ("valid", "same", "causal"), (1, 2, 3), (1, 2), (1, 2, 3)) if not (s > 1 and d > 1)]

    @pytest.mark.parametrize("pad,stride,dilation,multiplier", GRID)
    def test_float32_matches_reference(pad, stride, dilation, multiplier):
        i = GRID.index((pad, stride, dilation, multiplier))
        tensors, kw = _case(2, 23, 5, multiplier, 20, 3 + i % 3, stride, dilation, pad,
                            channels_last=i % 2 == 0, bias=i % 4 < 2, seed=i)
        _check(tensors, kw, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("channels_last", [True, False])
    @pytest.mark.parametrize("bias", [True, False])
    @pytest.mark.parametrize("shape", [
        (1, 1, 1, 1, 1, 1),     # batch, length, channels, multiplier, filters, kernel
        (1, 7, 1, 3, 1, 7),     # one channel, kernel as long as the input
        (3, 5, 2, 1, 3, 2),     # more sequences than steps
        (1, 67, 3, 2, 40, 9),   # rows and filters over several blocks
    ])
    def test_edge_shapes(shape, bias, channels_last):
        batch, length, channels, m, filters, k = shape
        for pad in ("valid", "same", "causal"):
            tensors, kw = _case(batch, length, channels, m, filters, k, 1, 1, pad,
                                channels_last, bias)
            _check(tensors, kw, rtol=1e-4, atol=1e-4)

    def test_strided_and_dilated_together():
        # functional rejects strides > 1 with dilation_rate > 1 (Keras does); the kernel
        # itself handles it, as the reference does.
        tensors, kw = _case(2, 29, 3, 2, 6, 3, 2, 3, "same", True, True)
        _check(tensors, kw, rtol=1e-4, atol=1e-4)

    def test_stride_longer_than_kernel():
        # Input steps between windows are never read: their dx must be exactly zero.
        for pad in ("valid", "same", "causal"):
            tensors, kw = _case(2, 17, 2, 1, 3, 2, 4, 1, pad, False, True)
            _check(tensors, kw, rtol=1e-4, atol=1e-4)

    try:
        import hypothesis
        from hypothesis import strategies as st
    except ImportError:  # a test extra; the parametrized cases above still run
        hypothesis = None

    if hypothesis is not None:

        @hypothesis.settings(max_examples=15, deadline=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(batch=st.integers(1, 3), length=st.integers(1, 40),
                          channels=st.integers(1, 6), multiplier=st.integers(1, 3),
                          filters=st.integers(1, 20), kernel_size=st.integers(1, 7),
                          stride=st.integers(1, 3), dilation=st.integers(1, 3),
                          pad=st.sampled_from(["valid", "same", "causal"]),
                          channels_last=st.booleans(), bias=st.booleans())
        def test_random_shapes(batch, length, channels, multiplier, filters, kernel_size,
                               stride, dilation, pad, channels_last, bias):
            span = (kernel_size - 1) * dilation + 1
            hypothesis.assume(pad != "valid" or length >= span)
            tensors, kw = _case(batch, length, channels, multiplier, filters, kernel_size,
                                stride, dilation, pad, channels_last, bias)
            _check(tensors, kw, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
    @pytest.mark.parametrize("pad,stride,dilation,multiplier,channels_last", [
        ("same", 1, 1, 1, True), ("causal", 1, 2, 2, False), ("valid", 2, 1, 3, True),
        ("same", 3, 1, 2, False)])
    def test_half_precision(dtype, tol, pad, stride, dilation, multiplier, channels_last):
        tensors, kw = _case(2, 19, 4, multiplier, 18, 5, stride, dilation, pad,
                            channels_last, bias=True, dtype=dtype)
        _check(tensors, kw, rtol=tol, atol=tol)

    def _check_strided_views(kernel):
        # channels_first given as a transposed channels_last tensor, a sliced batch, and a
        # non-contiguous output gradient: the kernels take strides, nothing is copied.
        tensors, kw = _case(4, 21, 6, 2, 10, 3, 1, 1, "same", False, True)
        x = tensors[0].transpose(1, 2).contiguous()[::2].transpose(1, 2)
        assert not x.is_contiguous()
        leaves = [t.detach().clone().requires_grad_() for t in (x, *tensors[1:])]
        ref_leaves = [t.detach().clone().double().requires_grad_() for t in (x, *tensors[1:])]
        y = kernel(*leaves, **kw)
        y_ref = reference.separable_conv1d(*ref_leaves, **kw)
        dy = torch.randn(y.shape[0], y.shape[2], y.shape[1]).to(y).transpose(1, 2)
        y.backward(dy)
        y_ref.backward(dy.double())
        torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
        for a, b in zip(leaves, ref_leaves):
            torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-4)

    def _check_partial_requires_grad(kernel):
        # only one input requires grad: the others' kernels are skipped
        tensors, kw = _case(2, 13, 3, 2, 5, 3, 1, 1, "causal", True, True)
        want = _run(reference.separable_conv1d, tensors, kw, dtype=torch.float64)
        for which in range(4):
            leaves = [t.detach().clone() for t in tensors]
            leaves[which].requires_grad_()
            y = kernel(*leaves, **kw)
            y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y))
            torch.testing.assert_close(leaves[which].grad, want[1 + which].float(),
                                       rtol=1e-4, atol=1e-4)

    def _check_float64_fallback(kernel, channels_last):
        # float64 is not a Triton dtype here: the launcher hands it to the reference.
        tensors, kw = _case(1, 9, 2, 2, 3, 3, 1, 1, "same", channels_last, True,
                            dtype=torch.float64)
        got = kernel(*tensors, **kw)
        want = reference.separable_conv1d(*tensors, **kw)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)

    def test_strided_views_are_read_in_place():
        _check_strided_views(triton_sepconv.separable_conv1d)

    @pytest.mark.parametrize("channels_last", [True, False])
    def test_row_splits(monkeypatch, channels_last):
        # Pretend to have many SMs so d(pointwise) and d(bias) reduce over several row
        # ranges (float32 partials), as they do on a GPU.
        monkeypatch.setattr(triton_sepconv, "_num_sms", lambda device: 64)
        assert triton_sepconv._row_splits(2 * 70, 6, 5, 64) == 3
        tensors, kw = _case(2, 70, 3, 2, 5, 3, 1, 1, "same", channels_last, True)
        _check(tensors, kw, rtol=1e-4, atol=1e-4)

    def test_more_row_splits_than_row_blocks(monkeypatch):
        # On a GPU, 128-row blocks can leave some of the ranges empty: they add zeros.
        monkeypatch.setattr(triton_sepconv, "_row_splits", lambda rows, cm, f, sms: 11)
        tensors, kw = _case(2, 40, 3, 1, 5, 3, 1, 1, "causal", False, True)
        _check(tensors, kw, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("channels_last", [True, False])
    def test_int64_offsets(force_int64, monkeypatch, channels_last):
        # Tensors past 2**30 elements are too big for a unit test; the kernels compiled
        # with int64 offsets (what such tensors get) must agree on small ones too.
        force_int64()
        tensors, kw = _case(2, 21, 3, 2, 18, 4, 2, 1, "same", channels_last, True)
        _check(tensors, kw, rtol=1e-4, atol=1e-4)

    def test_needs_int64():
        small = torch.empty(4, 5, 6)
        assert not triton_sepconv._needs_int64(small)
        # A view whose span (not its element count) passes 2**30: a stand-in, as torch
        # will not make such a view without the storage behind it.
        from types import SimpleNamespace
        wide = SimpleNamespace(shape=(2, 2), stride=lambda: (2 ** 30, 1), numel=lambda: 4,
                               is_contiguous=lambda: False)
        assert triton_sepconv._needs_int64(small, wide)
        big = SimpleNamespace(shape=(2 ** 15, 2 ** 15), stride=lambda: (2 ** 15, 1),
                              numel=lambda: 2 ** 30, is_contiguous=lambda: True)
        assert triton_sepconv._needs_int64(small, big)
        assert not triton_sepconv._needs_int64(
            SimpleNamespace(shape=(2 ** 15, 2 ** 15 - 1), stride=lambda: (2 ** 15 - 1, 1),
                            numel=lambda: 2 ** 15 * (2 ** 15 - 1), is_contiguous=lambda: True))
        assert not triton_sepconv._needs_int64(torch.empty(1).expand(2 ** 31))  # stride 0

    def test_partial_requires_grad():
        _check_partial_requires_grad(triton_sepconv.separable_conv1d)

    def test_float64_falls_back_to_reference():
        _check_float64_fallback(triton_sepconv.separable_conv1d, True)

    def test_functional_dispatches_to_triton(monkeypatch):
        monkeypatch.setenv("SEPCONV_KERNEL", "triton")
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(2, 17, 4, generator=gen)
        w = torch.randn(5, 4, 2, generator=gen)
        p = torch.randn(1, 8, 6, generator=gen)
        b = torch.randn(6, generator=gen)
        x, w, p, b = (t.to(DEVICE) for t in (x, w, p, b))
        calls = []
        original = triton_sepconv._SeparableConv1d.apply
        monkeypatch.setattr(triton_sepconv._SeparableConv1d, "apply",
                            lambda *a: calls.append(1) or original(*a))
        y = functional.separable_conv1d(x, w, p, b, strides=2, padding="same")
        assert calls, "functional did not reach the Triton kernel"
        monkeypatch.setenv("SEPCONV_KERNEL", "reference")
        want = functional.separable_conv1d(x, w, p, b, strides=2, padding="same")
        torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)

    def _check_empty_batch(kernel):
        tensors, kw = _case(2, 9, 3, 2, 4, 3, 1, 1, "same", True, True)
        tensors[0] = tensors[0][:0]
        got = _run(kernel, tensors, kw)
        want = _run(reference.separable_conv1d, tensors, kw)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)

    def _check_double_backward(kernel, channels_last):
        # create_graph=True: the first-order gradients stay differentiable (gradient
        # penalties), with the reference's second-order gradients.
        tensors, kw = _case(2, 9, 3, 2, 4, 3, 1, 2, "causal", channels_last, True)
        results = []
        for fn in (kernel, reference.separable_conv1d):
            leaves = [t.detach().clone().requires_grad_() for t in tensors]
            y = fn(*leaves, **kw)
            gx, gdw = torch.autograd.grad((y * y).sum(), leaves[:2], create_graph=True)
            (gx.square().sum() + gdw.square().sum()).backward()
            results.append([gx, gdw] + [t.grad for t in leaves])
        for g, w in zip(*results):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)

    def test_empty_batch():
        _check_empty_batch(triton_sepconv.separable_conv1d)

    def test_double_backward_matches_reference():
        _check_double_backward(triton_sepconv.separable_conv1d, True)

    def test_pick_kernel_routes_cuda(monkeypatch):
        # _pick_kernel -> functional._cuda_kernel (its every branch: test_kernel_cuda.py's
        # test_cuda_rule, with fakes) -> the kernel functions themselves, Triton imported.
        from kernel_env import fake_cuda
        from sepconv.kernels import cuda, triton_v2
        monkeypatch.delenv("SEPCONV_KERNEL", raising=False)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
        w, p = torch.randn(3, 64, 1), torch.randn(64, 128)

        def pick(dilation=8, grad=False):
            return functional._pick_kernel(fake_cuda((2, 10, 64), grad=grad), w, p, 1,
                                           dilation, 10, True)

        inference, training = pick(), pick(grad=True)
        assert inference.func is training.func is triton_v2.separable_conv1d
        assert inference.keywords == {"save_z": False} and training.keywords == {"save_z": True}
        with torch.no_grad():
            assert pick(grad=True) is inference
        multiplier_2 = functional._pick_kernel(fake_cuda((2, 10, 64)), torch.randn(3, 64, 2),
                                               torch.randn(128, 128), 1, 1, 10, True)
        assert multiplier_2 in cuda.COMPOSITIONS.values()
        monkeypatch.setenv("SEPCONV_KERNEL", "triton")  # variant 1, forced
        assert pick(dilation=1) is triton_sepconv.separable_conv1d

    def test_available():
        assert triton_sepconv.available()

    # ------------------------------------------------------------------ variant 2
    # kernels/triton_v2.py (SEPCONV_TRITON_VARIANT=v2): the same cases against the float64
    # reference, forward and the four gradients.  Under the interpreter its tiles are small
    # (16-32 rows, 16 channels, taps 2 at a time), so these shapes span several blocks.
    from sepconv.kernels import triton_v2

    def _check_v2(tensors, kw, rtol=1e-4, atol=1e-4):
        _check(tensors, kw, rtol, atol, kernel=triton_v2.separable_conv1d)

    @pytest.mark.parametrize("pad,stride,dilation,multiplier", GRID)
    def test_v2_float32_matches_reference(pad, stride, dilation, multiplier):
        i = GRID.index((pad, stride, dilation, multiplier))
        tensors, kw = _case(2, 23, 5, multiplier, 20, 3 + i % 3, stride, dilation, pad,
                            channels_last=i % 2 == 1, bias=i % 4 >= 2, seed=100 + i)
        _check_v2(tensors, kw)

    @pytest.mark.parametrize("save_z", [False, True])
    @pytest.mark.parametrize("channels_last", [True, False])
    @pytest.mark.parametrize("filters,fused_max", [
        (300, 256),  # F > 256: the depthwise kernel then cuBLAS (addmm / baddbmm)
        (20, 16),    # the same path on a small layer, 20 filters
        (300, 512),  # F not a power of two, fused with one 512-wide filter block
        (1, 256),    # one filter: a 16-wide block of which 15 columns are masked
    ])
    def test_v2_forward_paths(monkeypatch, channels_last, filters, fused_max, save_z):
        # save_z: the forward keeps z for d(pointwise) (the fused kernel then writes it)
        monkeypatch.setattr(triton_v2, "FUSED_MAX_F", fused_max)
        monkeypatch.setattr(triton_v2, "SAVE_Z", save_z)
        calls = []
        depthwise = triton_v2._depthwise
        monkeypatch.setattr(triton_v2, "_depthwise", lambda *a: calls.append(1) or depthwise(*a))
        for pad, stride, dilation, bias in (("same", 1, 2, True), ("causal", 2, 1, False),
                                            ("valid", 3, 1, True)):
            tensors, kw = _case(2, 21, 3, 2, filters, 4, stride, dilation, pad,
                                channels_last, bias, seed=filters + stride)
            _check_v2(tensors, kw)
        # the depthwise kernel runs in the unfused forward (float32 keeping z takes it),
        # and in the backward unless z was kept
        assert len(calls) == 3 * (1 if save_z else (filters > fused_max) + 1)

    @pytest.mark.parametrize("shape", [
        (1, 1, 1, 1, 1, 1),     # batch, length, channels, multiplier, filters, kernel
        (1, 7, 1, 3, 1, 7),     # one channel, kernel as long as the input (odd K, 2 taps a time)
        (3, 5, 2, 1, 3, 2),     # more sequences than steps
        (1, 67, 3, 2, 40, 9),   # rows and filters over several blocks
    ])
    def test_v2_edge_shapes(shape):
        batch, length, channels, m, filters, k = shape
        for i, pad in enumerate(("valid", "same", "causal")):
            tensors, kw = _case(batch, length, channels, m, filters, k, 1, 1, pad,
                                channels_last=i != 1, bias=i != 2)
            _check_v2(tensors, kw)

    def test_v2_inference_skips_autograd():
        # no gradient recorded: the forward alone (no autograd node), the same numbers
        for filters in (18, 300):  # fused; depthwise kernel + cuBLAS
            tensors, kw = _case(2, 25, 3, 2, filters, 4, 1, 2, "causal", True, True, seed=5)
            leaves = [t.detach().requires_grad_() for t in tensors]
            want = triton_v2.separable_conv1d(*leaves, **kw)
            with torch.no_grad():
                got = triton_v2.separable_conv1d(*leaves, **kw)
            plain = triton_v2.separable_conv1d(*tensors, **kw)
            assert want.grad_fn is not None and got.grad_fn is None and plain.grad_fn is None
            assert torch.equal(got, want.detach()) and torch.equal(plain, got)

    def test_v2_strided_and_dilated_together():
        tensors, kw = _case(2, 29, 3, 2, 6, 3, 2, 3, "same", True, True)
        _check_v2(tensors, kw)

    @pytest.mark.parametrize("channels_last", [True, False])
    @pytest.mark.parametrize("sms", [1, 64])
    def test_v2_depthwise_partials(monkeypatch, channels_last, sms):
        # d(depthwise) is summed from float32 partials of row ranges: with 64 SMs one range
        # per 16-row block; with 1 SM, 4 ranges of 2 blocks, the last one empty (zeros) in
        # channels_first (2 sequences x 3 blocks).  Deterministic: equal run to run.
        monkeypatch.setattr(triton_v2._v1, "_num_sms", lambda device: sms)
        blocks = 5 if channels_last else 6
        splits = triton_v2._dw_splits(blocks, 6, 16, sms)
        assert splits == (blocks if sms == 64 else 4)
        assert sms == 64 or channels_last or -(-blocks // splits) * (splits - 1) >= blocks
        tensors, kw = _case(2, 40, 3, 2, 5, 5, 1, 1, "same", channels_last, True)
        _check_v2(tensors, kw)
        a = _run(triton_v2.separable_conv1d, tensors, kw)
        b = _run(triton_v2.separable_conv1d, tensors, kw)
        assert all(torch.equal(u, v) for u, v in zip(a, b))

    # d(depthwise) alone, each kernel of triton_v2.DW_KERNELS: (batch, length, channels,
    # multiplier, kernel, stride, dilation, padding, channels_last, splits).  Interpreter
    # tiles: 16 rows, 16 channels, taps 2 at a time, so K = 5..9 spans 3-5 tap groups (the
    # last one part-masked) and 6 channels x M = 3 several channel blocks.  splits: None is
    # _dw_splits' choice on one SM; a number forces it (past the row blocks: empty ranges).
    DW_CASES = [
        (2, 23, 5, 2, 5, 1, 1, "same", True, None),
        (2, 40, 6, 3, 7, 2, 1, "causal", False, None),
        (3, 19, 4, 1, 3, 1, 3, "valid", True, 2),
        (1, 50, 3, 2, 9, 1, 2, "causal", True, 5),     # 4 row blocks, the 5th range empty
        (2, 33, 3, 1, 1, 3, 1, "same", False, 3),      # one tap; 2 x 1 blocks, 1 range empty
        (2, 37, 2, 2, 6, 1, 2, "same", False, 1),      # one range over every block
        (1, 7, 1, 3, 7, 1, 1, "valid", True, None),    # K = L: one output row
    ]

    def _dw_case(batch, length, channels, m, k, stride, dilation, pad, channels_last,
                 seed=0):
        """``x``, ``dz`` (``(R, C*M)`` float32), the reference's d(depthwise) from the same
        ``dy`` as ``(K, C*M)`` (computed in float64, rounded to float32), ``kw``, ``L_out``."""
        tensors, kw = _case(batch, length, channels, m, 4, k, stride, dilation, pad,
                            channels_last, False, seed=seed)
        x, w, p, _ = tensors
        want = _run(reference.separable_conv1d, tensors, kw, dtype=torch.float64)[2]
        l_out = padding.padded_output_length(length, k, stride, dilation, kw["pad_left"],
                                             kw["pad_right"])
        gen = torch.Generator().manual_seed(1)  # _run's dy
        shape = (batch, l_out, 4) if channels_last else (batch, 4, l_out)
        dy = torch.randn(shape, generator=gen).to(x)
        dy_rows = (dy if channels_last else dy.transpose(1, 2)).reshape(-1, 4)
        return x, (dy_rows @ p.t()).contiguous(), want.reshape(k, -1).double(), kw, l_out

    @pytest.mark.parametrize("kernel", ["per_tile", "rows_once"])
    def test_v2_depthwise_grad_kernels(monkeypatch, kernel):
        for i, case in enumerate(DW_CASES):
            *geometry, splits = case
            x, dz, want, kw, l_out = _dw_case(*geometry, seed=i)
            if splits is not None:
                monkeypatch.setattr(triton_v2, "_dw_splits", lambda *a, n=splits: n)
            else:
                monkeypatch.setattr(triton_v2._v1, "_num_sms", lambda device: 1)
            triton_v2._clear_plans()  # (launches are planned once per call signature)
            got = triton_v2._depthwise_grad(x, dz, want.shape[0], kw["stride"], kw["dilation"],
                                            kw["pad_left"], l_out, kw["channels_last"], kernel)
            monkeypatch.undo()
            triton_v2._clear_plans()
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5,
                                       msg=lambda m, case=case: f"{case}: {m}")

    @pytest.mark.parametrize("kernel", ["rows", "unrolled"])
    def test_v2_depthwise_kernels(kernel):
        # z alone, each kernel of triton_v2.DEPTHWISE_KERNELS, against the reference with an
        # identity pointwise (float64), on DW_CASES' geometries (unrolled: taps 2 at a time)
        for i, (batch, length, channels, m, k, stride, dilation, pad, channels_last,
                _) in enumerate(DW_CASES):
            (x, w, _, _), kw = _case(batch, length, channels, m, 1, k, stride, dilation, pad,
                                     channels_last, False, seed=i)
            cm = channels * m
            eye = torch.eye(cm, dtype=torch.float64, device=DEVICE)
            want = reference.separable_conv1d(x.double(), w.double(), eye, None, **kw)
            want = want if channels_last else want.transpose(1, 2)
            z = torch.full(want.shape, float("nan"), device=DEVICE)
            triton_v2._depthwise(x, w.reshape(k, cm), kw["stride"], kw["dilation"],
                                 kw["pad_left"], want.shape[1], channels_last, z, kernel)
            torch.testing.assert_close(z.double(), want, rtol=1e-5, atol=1e-5,
                                       msg=lambda msg, i=i: f"{DW_CASES[i]}: {msg}")

    # long sequences: row blocks that touch no padding or edge (the interior tiles) among
    # those that do; flattened rows and one sequence per block, strides, dilations,
    # multipliers, channel counts a multiple of the block's (16 interpreted) or not
    INTERIOR_CASES = [
        (2, 100, 5, 1, 5, 1, 1, "same", True),
        (1, 140, 16, 1, 3, 1, 1, "valid", False),
        (2, 130, 8, 2, 4, 2, 1, "causal", True),
        (1, 120, 3, 1, 7, 1, 3, "same", False),
        (3, 97, 4, 4, 2, 1, 1, "valid", True),
    ]

    @pytest.mark.parametrize("case", INTERIOR_CASES)
    def test_v2_depthwise_interior_tiles(monkeypatch, force_int64, case):
        # z with the interior tiles (triton_v2.INTERIOR) against the reference in float64
        # and, bit for bit, against the masked tiles alone; the interior path must run
        batch, length, channels, m, k, stride, dilation, pad, channels_last = case
        (x, w, _, _), kw = _case(batch, length, channels, m, 1, k, stride, dilation, pad,
                                 channels_last, False, seed=7)
        cm = channels * m
        eye = torch.eye(cm, dtype=torch.float64, device=DEVICE)
        want = reference.separable_conv1d(x.double(), w.double(), eye, None, **kw)
        want = want if channels_last else want.transpose(1, 2)
        calls = []
        inner = triton_sepconv._depthwise_tile_interior
        if triton_sepconv.INTERPRET:  # (on a GPU the kernel is compiled: no spy)
            monkeypatch.setattr(triton_sepconv, "_depthwise_tile_interior",
                                lambda *a, **k: calls.append(1) or inner(*a, **k))

        def depthwise():
            z = torch.full(want.shape, float("nan"), device=DEVICE)
            triton_v2._depthwise(x, w.reshape(k, cm), kw["stride"], kw["dilation"],
                                 kw["pad_left"], want.shape[1], channels_last, z)
            return z

        _interior_and_masked(monkeypatch, force_int64, depthwise, want)
        if triton_sepconv.INTERPRET:
            assert calls, "no row block took the interior tile"

    def _interior_and_masked(monkeypatch, force_int64, compute, want):
        """``compute()`` with int32 and int64 offsets, the interior tiles on and off: each
        close to ``want`` (float64), and on and off equal bit for bit."""
        runs = {}
        for int64 in (False, True):
            if int64:
                force_int64()
            for on in (True, False):
                monkeypatch.setattr(triton_v2, "INTERIOR", on)
                triton_v2._clear_plans()
                runs[int64, on] = compute()
                torch.testing.assert_close(runs[int64, on].double(), want, rtol=1e-5,
                                           atol=1e-5)
        triton_v2._clear_plans()
        for int64 in (False, True):
            assert torch.equal(runs[int64, True], runs[int64, False])

    @pytest.mark.parametrize("case", INTERIOR_CASES)
    @pytest.mark.parametrize("splits", [1, 3])
    def test_v2_depthwise_grad_interior_tiles(monkeypatch, force_int64, case, splits):
        # d(depthwise) by rows_once with the interior tiles against the reference and, bit
        # for bit, against the masked tiles alone; one row range, or three (a range may
        # start or end inside a sequence); the interior path must run
        x, dz, want, kw, l_out = _dw_case(*case, seed=11)
        monkeypatch.setattr(triton_v2, "_dw_splits", lambda *a: splits)
        calls = []
        interior = triton_v2._interior
        if triton_sepconv.INTERPRET:
            monkeypatch.setattr(triton_v2, "_interior",
                                lambda *a, **k: calls.append(bool(interior(*a, **k)))
                                or interior(*a, **k))
        _interior_and_masked(
            monkeypatch, force_int64,
            lambda: triton_v2._depthwise_grad(x, dz, want.shape[0], kw["stride"],
                                              kw["dilation"], kw["pad_left"], l_out,
                                              kw["channels_last"], "rows_once"), want)
        if triton_sepconv.INTERPRET:
            assert any(calls), "no row block took the interior tiles"
            # ("valid" without a stride can make every block interior; with padding not)
            assert not all(calls) or kw["pad_left"] + kw["pad_right"] == 0, calls

    @pytest.mark.parametrize("case,filters", [  # 20: the fused forward; 300 the unfused
        (INTERIOR_CASES[0], 20), (INTERIOR_CASES[1], 300), (INTERIOR_CASES[2], 20),
        (INTERIOR_CASES[3], 300)])
    def test_v2_interior_tiles_end_to_end(monkeypatch, case, filters):
        # the whole layer, forward and the four gradients, with the interior tiles (the
        # depthwise, d(depthwise) and dx kernels' and, FUSED_INTERIOR, the fused
        # forward's) against the reference and, bit for bit, without them
        batch, length, channels, m, k, stride, dilation, pad, channels_last = case
        tensors, kw = _case(batch, length, channels, m, filters, k, stride, dilation, pad,
                            channels_last, True, seed=5)
        calls = []
        if triton_sepconv.INTERPRET:  # the interior tiles the dx and fused kernels took
            for name in ("_dx_tile_interior", "_depthwise_tile_interior"):
                inner = getattr(triton_sepconv, name)
                monkeypatch.setattr(triton_sepconv, name,
                                    lambda *a, inner=inner, name=name, **k:
                                    calls.append(name) or inner(*a, **k))
        runs = {}
        for on in (True, False):
            monkeypatch.setattr(triton_v2, "INTERIOR", on)
            monkeypatch.setattr(triton_v2, "FUSED_INTERIOR", on)
            triton_v2._clear_plans()
            _check_v2(tensors, kw)
            runs[on] = _run(triton_v2.separable_conv1d, tensors, kw)
        triton_v2._clear_plans()
        for name, a, b in zip(["y", "dx", "d_depthwise", "d_pointwise", "d_bias"],
                              runs[True], runs[False]):
            assert torch.equal(a, b), name
        if triton_sepconv.INTERPRET:
            if stride == 1:
                assert "_dx_tile_interior" in calls, calls
            if filters == 20:  # (fused)
                assert "_depthwise_tile_interior" in calls, calls

    def test_v2_alternative_kernels_end_to_end(force_int64, monkeypatch):
        # DW_KERNEL = "rows_once" and DEPTHWISE_KERNEL = "unrolled" through the whole layer
        # (the unfused forward, F > FUSED_MAX_F): 16-bit and int64 offsets too; several tap
        # groups in the grid, deterministic run to run; bad names are errors.
        monkeypatch.setattr(triton_v2, "DW_KERNEL", "rows_once")
        monkeypatch.setattr(triton_v2, "DEPTHWISE_KERNEL", "unrolled")
        monkeypatch.setattr(triton_v2, "FUSED_MAX_F", 4)
        grids = {}
        for name in ("_dw_rows_once_kernel", "_depthwise_unrolled_kernel"):
            kernel = getattr(triton_v2, name)
            spy = type("Spy", (), {"__getitem__": lambda self, grid, name=name, kernel=kernel:
                                   grids.setdefault(name, []).append(grid) or kernel[grid]})
            monkeypatch.setattr(triton_v2, name, spy())
        tensors, kw = _case(2, 30, 3, 2, 5, 5, 2, 1, "causal", False, True, seed=3)
        _check_v2(tensors, kw)
        taps = triton_v2._config("dw_rows_once").kwargs["BLOCK_K"]  # (2 interpreted, 4 GPU)
        assert grids["_dw_rows_once_kernel"][0][0] == -(-5 // taps)  # K = 5: tap groups
        assert len(grids["_depthwise_unrolled_kernel"]) == 2  # forward, and d(pointwise)
        a = _run(triton_v2.separable_conv1d, tensors, kw)
        assert all(torch.equal(u, v) for u, v in zip(a, _run(triton_v2.separable_conv1d,
                                                             tensors, kw)))
        tensors, kw = _case(2, 19, 4, 2, 18, 5, 1, 2, "same", True, True, dtype=torch.bfloat16)
        _check(tensors, kw, rtol=3e-2, atol=3e-2, kernel=triton_v2.separable_conv1d)
        force_int64()
        tensors, kw = _case(2, 21, 3, 2, 6, 4, 1, 1, "same", True, True)
        _check_v2(tensors, kw)
        monkeypatch.setattr(triton_v2, "DEPTHWISE_KERNEL", "fast")
        with pytest.raises(ValueError, match="DEPTHWISE_KERNEL.*'fast'"):
            _run(triton_v2.separable_conv1d, tensors, kw)
        monkeypatch.setattr(triton_v2, "DEPTHWISE_KERNEL", "rows")
        monkeypatch.setattr(triton_v2, "DW_KERNEL", "fast")
        with pytest.raises(ValueError, match="DW_KERNEL.*'fast'"):
            _run(triton_v2.separable_conv1d, tensors, kw)

    @pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
    @pytest.mark.parametrize("pad,stride,dilation,multiplier,channels_last,filters", [
        ("same", 1, 1, 1, True, 18), ("causal", 1, 2, 2, False, 18),
        ("valid", 2, 1, 3, True, 270), ("same", 3, 1, 2, False, 270)])
    def test_v2_half_precision(dtype, tol, pad, stride, dilation, multiplier, channels_last,
                               filters):
        tensors, kw = _case(2, 19, 4, multiplier, filters, 5, stride, dilation, pad,
                            channels_last, bias=True, dtype=dtype)
        _check(tensors, kw, rtol=tol, atol=tol, kernel=triton_v2.separable_conv1d)

    @pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
    def test_v2_half_precision_fused_forward_keeps_z(monkeypatch, dtype, tol):
        # 16-bit: the fused kernel also stores z (STORE_Z); the backward uses it, so the
        # depthwise kernel never runs.
        monkeypatch.setattr(triton_v2, "SAVE_Z", True)
        calls = []
        depthwise = triton_v2._depthwise
        monkeypatch.setattr(triton_v2, "_depthwise", lambda *a: calls.append(1) or depthwise(*a))
        for pad, stride, channels_last in (("causal", 1, True), ("same", 2, False)):
            tensors, kw = _case(2, 37, 4, 2, 18, 5, stride, 1, pad, channels_last, bias=True,
                                dtype=dtype)
            _check(tensors, kw, rtol=tol, atol=tol, kernel=triton_v2.separable_conv1d)
        assert not calls

    @pytest.mark.parametrize("save_z", [False, True])
    def test_v2_save_z_argument(monkeypatch, save_z):
        # functional asks for save_z per call (SEPCONV_KERNEL=triton_v2_savez forces it);
        # the argument wins over the module's default.  F > 256: the depthwise kernel runs in
        # the forward, and again in the backward unless z was kept.
        monkeypatch.setattr(triton_v2, "SAVE_Z", not save_z)
        monkeypatch.setenv("SEPCONV_KERNEL", "triton_v2_savez" if save_z else "triton_v2")
        calls = []
        depthwise = triton_v2._depthwise
        monkeypatch.setattr(triton_v2, "_depthwise", lambda *a: calls.append(1) or depthwise(*a))
        tensors, kw = _case(2, 21, 3, 1, 300, 3, 1, 2, "causal", True, True, seed=7)
        kernel = functional._pick_kernel(tensors[0], tensors[1], tensors[2], 1, 2, 21)
        assert kernel.func is triton_v2.separable_conv1d and kernel.keywords == {
            "save_z": save_z}
        _check(tensors, kw, 1e-4, 1e-4, kernel=kernel)
        assert len(calls) == (1 if save_z else 2)

    @pytest.mark.parametrize("allowed", [False, True])
    def test_v2_products_follow_cudnn_tf32(monkeypatch, allowed):
        # float32 products as a torch convolution's (and kernels/cuda.py's compositions'):
        # TF32 exactly where cuDNN's flag allows it, in the GEMMs (cuBLAS' flag set for the
        # call) and the fused kernel's tl.dot, forward and backward; cuBLAS' flag restored.
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", allowed)
        assert not torch.backends.cuda.matmul.allow_tf32  # (torch's default)
        seen = []
        for name in ("mm", "addmm"):
            real = getattr(torch, name)
            monkeypatch.setattr(torch, name, lambda *a, real=real, **k: seen.append(
                ("gemm", torch.backends.cuda.matmul.allow_tf32)) or real(*a, **k))
        precision = triton_sepconv._precision
        monkeypatch.setattr(triton_sepconv, "_precision",
                            lambda dtype: seen.append(("dot", precision(dtype))) or precision(dtype))
        for filters in (18, 300):  # the fused forward; the depthwise kernel then cuBLAS
            tensors, kw = _case(2, 21, 3, 1, filters, 3, 1, 1, "same", True, True, seed=3)
            _check(tensors, kw, 1e-2, 1e-2, kernel=triton_v2.separable_conv1d)
            assert not torch.backends.cuda.matmul.allow_tf32
        assert ("dot", "tf32" if allowed else "ieee") in seen
        assert {flag for what, flag in seen if what == "gemm"} == {allowed}
        assert len([1 for what, _ in seen if what == "gemm"]) >= 5  # forward and backward

    def test_v2_float64_falls_back_to_reference():
        _check_float64_fallback(triton_v2.separable_conv1d, False)

    def test_v2_strided_views_partial_grad_and_int64(force_int64, monkeypatch):
        _check_strided_views(triton_v2.separable_conv1d)
        _check_partial_requires_grad(triton_v2.separable_conv1d)
        # int64 offsets (what tensors past 2**30 elements get), both forward paths
        force_int64()
        from sepconv.kernels import triton_launch as launcher
        int64, launch = [], launcher.launch
        monkeypatch.setattr(launcher, "launch", lambda kernel, grid, args, constexprs, *rest:
                            int64.append(constexprs["INT64"])
                            or launch(kernel, grid, args, constexprs, *rest))
        for filters in (18, 300):
            tensors, kw = _case(2, 21, 3, 2, filters, 4, 2, 1, "same", filters == 18, True)
            _check_v2(tensors, kw)
        assert len(int64) >= 8 and all(int64)  # forward, d(depthwise), dx, z: every launch

    def test_v2_empty_batch_and_double_backward():
        _check_empty_batch(triton_v2.separable_conv1d)
        _check_double_backward(triton_v2.separable_conv1d, False)

    def test_variant_switch(monkeypatch):
        # SEPCONV_TRITON_VARIANT=v2 sends triton_sepconv's (and so functional's) calls to
        # variant 2; unset or v1 keeps variant 1; anything else is an error naming it.
        tensors, kw = _case(2, 11, 3, 1, 4, 3, 1, 1, "same", True, True)
        calls = []
        original = triton_v2._forward
        monkeypatch.setattr(triton_v2, "_forward", lambda *a: calls.append(1) or original(*a))
        monkeypatch.delenv("SEPCONV_TRITON_VARIANT", raising=False)
        want = triton_sepconv.separable_conv1d(*tensors, **kw)
        monkeypatch.setenv("SEPCONV_TRITON_VARIANT", "v1")
        triton_sepconv.separable_conv1d(*tensors, **kw)
        assert not calls
        monkeypatch.setenv("SEPCONV_TRITON_VARIANT", "v2")
        got = triton_sepconv.separable_conv1d(*tensors, **kw)
        assert calls == [1]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        monkeypatch.setenv("SEPCONV_KERNEL", "triton")
        x, w, p, b = tensors
        functional.separable_conv1d(x, w, p.unsqueeze(0), b, padding="same")
        assert calls == [1, 1]
        monkeypatch.setenv("SEPCONV_TRITON_VARIANT", "v3")
        with pytest.raises(ValueError, match="SEPCONV_TRITON_VARIANT='v3'"):
            triton_sepconv.separable_conv1d(*tensors, **kw)

    # kernels/triton_launch.py: the compiled kernel's launcher called directly.
    from sepconv.kernels import triton_launch

    def test_fast_launch_mirrors_installed_triton():
        """The fast launch repeats JITFunction.run's launcher call: the installed triton
        must still make that call (a triton upgrade that changes it switches the fast path
        off, and this test says so)."""
        assert triton_launch.compatible()

    class _FakeCompiled:
        function, packed_metadata = "function", "metadata"

        def __init__(self, calls):
            self.calls = calls

        def run(self, *args):
            self.calls.append(("fast", args))

    class _FakeKernel:
        """Stands in for a JITFunction: parameters a, b, n, then constexprs C2, C1."""
        arg_names = ["a", "b", "n", "C2", "C1"]
        pre_run_hooks = []

        def __init__(self):
            self.calls = []
            self.compiled = _FakeCompiled(self.calls)

        def __getitem__(self, grid):
            def plain(*args, **kwargs):
                self.calls.append(("plain", grid, args, kwargs))
                return self.compiled
            return plain

    @pytest.fixture
    def fake_launch(monkeypatch):
        monkeypatch.setattr(triton_launch, "FAST", True)
        monkeypatch.setattr(triton_launch, "_driver", lambda: (lambda: 0, lambda d: 77))
        return _FakeKernel()

    def test_fast_launch_replays_the_compiled_kernel(fake_launch):
        kernel = fake_launch
        a, b = torch.zeros(8), torch.zeros(4, dtype=torch.float16)
        launch = lambda *args, grid=(3, 2), **c: triton_launch.launch(
            kernel, grid, args, c or dict(C1=1, C2="x"), 4, 2)
        assert launch(a, b, 5) is kernel.compiled
        assert kernel.calls == [("plain", (3, 2), (a, b, 5),
                                 dict(C1=1, C2="x", num_warps=4, num_stages=2))]
        launch(a, b, 5, grid=(9,))
        # every parameter in the kernel's order (constexprs too), grid padded to 3 axes
        assert kernel.calls[-1] == ("fast", (9, 1, 1, 77, "function", "metadata", None, None,
                                             None, a, b, 5, "x", 1))
        # what triton specializes on changes the key: a plain launch, then fast again
        for args, c in [((a, b, 6), {}), ((a[1:], b, 5), {}), ((a.double(), b, 5), {}),
                        ((a, b, 5), dict(C1=2, C2="x"))]:
            before = len(kernel.calls)
            launch(*args, **c)
            launch(*args, **c)
            assert [call[0] for call in kernel.calls[before:]] == ["plain", "fast"], args

    def test_fast_launch_with_a_plan(fake_launch):
        # a caller's plan dict: compiled kernels by kernel, device, dtypes and alignment
        kernel, plan, a = fake_launch, {}, torch.zeros(8)
        go = lambda t, k=kernel: triton_launch.launch(k, (2,), (t, t, 3), dict(C1=1, C2=2),
                                                      4, 2, plan)
        go(a), go(a)
        assert [c[0] for c in kernel.calls] == ["plain", "fast"]
        assert kernel.calls[-1][1][9:] == (a, a, 3, 2, 1)
        go(a[1:]), go(a[1:])
        other = _FakeKernel()
        go(a, other), go(a, other)
        assert [c[0] for c in kernel.calls[2:]] == ["plain", "fast"]
        assert [c[0] for c in other.calls] == ["plain", "fast"]
        assert len(plan) == 3

    def test_fast_launch_gives_way(fake_launch, monkeypatch):
        kernel = fake_launch
        a = torch.zeros(8)
        launch = lambda grid=(1,): triton_launch.launch(kernel, grid, (a, a, 1),
                                                        dict(C1=1, C2=2), 4, 2)
        launch(), launch()
        assert [c[0] for c in kernel.calls] == ["plain", "fast"]
        from triton import knobs
        hook = lambda metadata: None
        knobs.runtime.launch_enter_hook.add(hook)  # a profiler's hook: plain launches
        try:
            launch()
        finally:
            knobs.runtime.launch_enter_hook.remove(hook)
        launch(lambda meta: (1,))  # a grid function
        monkeypatch.setattr(triton_launch, "compatible", lambda: False)
        launch()
        assert [c[0] for c in kernel.calls[2:]] == ["plain"] * 3
        monkeypatch.setattr(kernel, "pre_run_hooks", [print])
        monkeypatch.setattr(triton_launch, "compatible", lambda: True)
        triton_launch.launch(kernel, (1,), (a, a, 2), dict(C1=1, C2=2), 4, 2)
        triton_launch.launch(kernel, (1,), (a, a, 2), dict(C1=1, C2=2), 4, 2)
        assert [c[0] for c in kernel.calls[-2:]] == ["plain", "plain"]

    @pytest.mark.skipif(triton_sepconv.INTERPRET, reason="the fast launch needs a GPU")
    @pytest.mark.parametrize("case", [(2, 37, 5, 1, 20, 4, 1, 1, "causal", True, True),
                                      (3, 50, 6, 2, 200, 9, 2, 1, "same", False, False),
                                      (2, 64, 8, 1, 16, 3, 1, 4, "valid", True, True)])
    def test_v2_fast_launch_matches_plain_launch(monkeypatch, case):
        """Variant 2 forward and backward with the fast launch give the plain launch's
        numbers bit for bit, on aligned and unaligned inputs, and do launch fast."""
        tensors, kw = _case(*case)
        x = tensors[0]
        shifted = torch.empty(x.numel() + 1, device=x.device, dtype=x.dtype)[1:]
        tensors_unaligned = [shifted.view(x.shape).copy_(x)] + tensors[1:]
        for inputs in (tensors, tensors_unaligned, tensors):
            monkeypatch.setattr(triton_launch, "FAST", False)
            want = _run(triton_v2.separable_conv1d, inputs, kw)
            monkeypatch.setattr(triton_launch, "FAST", True)
            fast_before = triton_launch.COUNTS["fast"]
            got = _run(triton_v2.separable_conv1d, inputs, kw)
            got = _run(triton_v2.separable_conv1d, inputs, kw)  # the second call replays
            assert triton_launch.COUNTS["fast"] > fast_before
            for g, w in zip(got, want):
                assert torch.equal(g, w)
