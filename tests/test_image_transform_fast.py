"""``functional.image_transform``'s C routine (``kernels/_transform_native.py``) against
the torch formulation it replaced for CPU images (kept below verbatim as the oracle, as of
8e1ea5b, whose bit-exactness against TensorFlow tests/test_augmentation.py proves), and
against TensorFlow's ImageProjectiveTransformV3 directly for the half-precision dtypes;
every fill mode x interpolation x dtype x output shape, hypothesis-drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sepconv import functional as F
from sepconv.kernels import _transform_native

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


# -- the oracle: image_transform as of 8e1ea5b (torch operations only) ---------------------

def _old_map_coordinate(c, length, fill_mode):
    if fill_mode == "constant":
        return c
    if fill_mode == "nearest" or length <= 1:
        return c.clamp(0.0, float(length - 1)) if length > 1 else torch.zeros_like(c)
    if fill_mode == "reflect":
        sz2 = 2 * length
        low = sz2 * torch.trunc(-c / sz2) + c
        low = torch.where(low < -length, low + sz2, -low - 1)
        high = c - sz2 * torch.trunc(c / sz2)
        high = torch.where(high >= length, sz2 - high - 1, high)
    else:
        sz = length - 1
        low = c + length * (torch.trunc(-c / sz) + 1)
        high = c - length * torch.trunc(c / sz)
    c = torch.where(c < 0, low, torch.where(c > length - 1, high, c))
    return c.clamp(0.0, float(length - 1))


def old_image_transform(images, transforms, fill_mode="reflect", interpolation="bilinear",
                        fill_value=0.0, output_shape=None):
    batch, rows, cols, channels = (int(s) for s in images.shape)
    t = torch.as_tensor(transforms, dtype=torch.float32, device=images.device).detach()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    out_h, out_w = (rows, cols) if output_shape is None else (int(v) for v in output_shape)
    t = t.expand(batch, 8)[:, :, None, None]
    ox = torch.arange(out_w, dtype=torch.float32, device=images.device)[None, None, :]
    oy = torch.arange(out_h, dtype=torch.float32, device=images.device)[None, :, None]
    a0, a1, a2, b0, b1, b2, c0, c1 = (t[:, i] for i in range(8))
    infinite = None
    if bool((t[:, 1] == 0).all() and (t[:, 3] == 0).all() and (t[:, 6:] == 0).all()):
        x = a0 * ox + a2
        y = b1 * oy + b2
    elif bool((t[:, 6:] == 0).all()):
        x = a0 * ox + a1 * oy + a2
        y = b0 * ox + b1 * oy + b2
    else:
        projection = c0 * ox + c1 * oy + 1.0
        infinite = projection == 0
        projection = torch.where(infinite, torch.ones_like(projection), projection)
        x = (a0 * ox + a1 * oy + a2) / projection
        y = (b0 * ox + b1 * oy + b2) / projection
    x = _old_map_coordinate(x, cols, fill_mode)
    y = _old_map_coordinate(y, rows, fill_mode)
    fill = torch.tensor(float(fill_value), dtype=torch.float32).to(images.dtype)
    table = torch.cat([images.reshape(-1, channels),
                       fill.to(images.device).expand(1, channels)])
    outside = batch * rows * cols
    first = (torch.arange(batch, device=images.device) * (rows * cols))[:, None, None]

    def offsets(c, length, stride):
        inside = (c >= 0) & (c < length)
        return torch.where(inside, c, 0).to(torch.int64) * stride, inside

    def read(row, col):
        index = torch.where(row[1] & col[1], first + row[0] + col[0], outside)
        index = index.expand(batch, out_h, out_w)
        return table.index_select(0, index.reshape(-1)).reshape(batch, out_h, out_w,
                                                                channels)

    if interpolation == "nearest":
        def half_away(v):
            return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)
        out = read(offsets(half_away(y), rows, cols), offsets(half_away(x), cols, 1))
    else:
        y0, x0 = torch.floor(y), torch.floor(x)
        y1, x1 = y0 + 1, x0 + 1
        r0, r1 = offsets(y0, rows, cols), offsets(y1, rows, cols)
        k0, k1 = offsets(x0, cols, 1), offsets(x1, cols, 1)
        wx0, wx1 = (x1 - x)[..., None], (x - x0)[..., None]
        wy0, wy1 = (y1 - y)[..., None], (y - y0)[..., None]
        top = wx0 * read(r0, k0).float() + wx1 * read(r0, k1).float()
        bottom = wx0 * read(r1, k0).float() + wx1 * read(r1, k1).float()
        out = (wy0 * top + wy1 * bottom).to(images.dtype)
    if infinite is not None and bool(infinite.any()):
        out = torch.where(infinite[..., None], fill.to(out.device), out)
    return out


# -- drawn cases --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def native():
    if _transform_native.load() is None:
        pytest.skip("the C routine did not build here (no C compiler?): image_transform "
                    "runs the torch formulation, which tests/test_augmentation.py covers")
    return _transform_native


def _matrices(rng, kind, n, rows, cols):
    if kind == "rotation":
        return F.rotation_matrix(torch.from_numpy(rng.uniform(-10, 10, n).astype(np.float32)),
                                 rows, cols)
    if kind == "translation":
        d = (rng.uniform(-3, 3, (n, 2)) * [cols, rows]).astype(np.float32)
        if rng.random() < 0.5:
            d = np.round(d)  # whole pixels: coordinates on the grid, ties of nearest
        return F.translation_matrix(torch.from_numpy(d))
    if kind == "zoom":
        return F.zoom_matrix(torch.from_numpy(rng.uniform(0.05, 4, (n, 2)).astype(np.float32)),
                             rows, cols)
    m = np.concatenate([rng.uniform(-2, 2, (n, 6)), rng.uniform(-0.3, 0.3, (n, 2))],
                       axis=1).astype(np.float32)
    if kind == "projective_infinite":  # k = c0 x + c1 y + 1 = 0 along one row
        m[0, 6:] = [0.0, -1.0 / max(rows - 1, 1)] if rows > 1 else 0.0
    return torch.from_numpy(m)


def _images(rng, shape, dtype):
    x = rng.standard_normal(shape) * 50
    if rng.random() < 0.3:
        x = np.round(x)  # whole values (uint8-like images)
    return torch.from_numpy(x).to(dtype)


CASE = dict(rows=st.integers(1, 10), cols=st.integers(1, 10), batch=st.integers(1, 3),
            channels=st.integers(1, 4),
            kind=st.sampled_from(["rotation", "translation", "zoom", "projective",
                                  "projective_infinite"]),
            fill_mode=st.sampled_from(F.FILL_MODES),
            interpolation=st.sampled_from(F.TRANSFORM_INTERPOLATIONS),
            dtype=st.sampled_from(DTYPES),
            fill_value=st.sampled_from([0.0, -1.5, 2.25, 0.1]),
            output_shape=st.one_of(st.none(), st.tuples(st.integers(1, 12),
                                                        st.integers(1, 12))),
            one_matrix=st.booleans(), seed=st.integers(0, 2 ** 16))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(**CASE)
def test_fast_path_equals_the_previous_torch_path(native, rows, cols, batch, channels, kind,
                                                  fill_mode, interpolation, dtype, fill_value,
                                                  output_shape, one_matrix, seed):
    """Bit for bit (NaN-free inputs), the C routine and today's torch formulation against
    the previous implementation, on one and two threads."""
    rng = np.random.default_rng(seed)
    x = _images(rng, (batch, rows, cols, channels), dtype)
    m = _matrices(rng, kind, 1 if one_matrix else batch, rows, cols)
    want = old_image_transform(x, m, fill_mode, interpolation, fill_value, output_shape)
    assert F._native_transform_applies(x, want.numel())
    got = F.image_transform(x, m, fill_mode, interpolation, fill_value, output_shape)
    assert got.dtype == dtype and got.shape == want.shape
    assert torch.equal(got, want)
    t = m if m.dim() == 2 else m[None]
    out_h, out_w = (rows, cols) if output_shape is None else output_shape
    torch_path = F._image_transform_torch(x, t, fill_mode, interpolation, fill_value,
                                          out_h, out_w)
    assert torch.equal(torch_path, want)
    # two threads split the output lines: the same numbers
    out = torch.empty(want.shape, dtype=torch.float64 if dtype == torch.float64
                      else torch.float32)
    xs = x if dtype in (torch.float32, torch.float64) else x.float()
    fill = float(torch.tensor(fill_value, dtype=torch.float32).to(dtype).float())
    native.transform(xs.contiguous(), t.expand(t.shape[0], 8).contiguous(), out,
                     fill_mode=F.FILL_MODES.index(fill_mode),
                     interpolation=F.TRANSFORM_INTERPOLATIONS.index(interpolation),
                     fill=fill, threads=2)
    assert torch.equal(out.to(dtype), want)


def test_fast_path_layout_threads_and_fallbacks(native, monkeypatch):
    """Non-contiguous images, a (8,) transform, a large batch on 1 and 2 threads,
    empty outputs, and the torch route taken where the routine is unavailable."""
    rng = np.random.default_rng(1)
    x = _images(rng, (5, 17, 23, 3), torch.float32)
    m = _matrices(rng, "rotation", 5, 17, 23)
    want = old_image_transform(x, m)
    for images in (x.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3), x[..., :3]):
        assert not images.is_contiguous() or images is not x
        assert torch.equal(F.image_transform(images, m), want)
    assert torch.equal(F.image_transform(x[:1], m[0]), old_image_transform(x[:1], m[0]))
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert torch.equal(F.image_transform(x, m, "wrap", "nearest", 1.0),
                               old_image_transform(x, m, "wrap", "nearest", 1.0))
    finally:
        torch.set_num_threads(threads)
    assert F.image_transform(x, m, output_shape=(0, 4)).shape == (5, 0, 4, 3)
    assert F.image_transform(x[:0], m[:1]).shape == (0, 17, 23, 3)
    # integer images (no C routine): the torch formulation, as before
    xi = x.round().to(torch.int32)
    assert not F._native_transform_applies(xi, 1)
    assert torch.equal(F.image_transform(xi, m, "constant"),
                       old_image_transform(xi, m, "constant"))
    # vmap and tracing take the torch route (no data pointer; a graph to record)
    assert torch.equal(torch.func.vmap(lambda v: F.image_transform(v, m))(x[None])[0], want)
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(lambda v: F.image_transform(v, m), (x,), check_trace=False)
    assert torch.equal(traced(x.flip(1)), old_image_transform(x.flip(1), m))
    # no compiler / SEPCONV_NATIVE=0: load() gives None and the torch route runs
    monkeypatch.setattr(_transform_native._LIBRARY, "lib", None)
    assert not F._native_transform_applies(x, 1)
    assert torch.equal(F.image_transform(x, m, "reflect"), want)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(**CASE)
def test_gradients_unchanged(native, rows, cols, batch, channels, kind, fill_mode,
                             interpolation, dtype, fill_value, output_shape, one_matrix,
                             seed):
    """Images that need a gradient take the (differentiable) torch formulation: the same
    forward numbers as the C routine, the previous implementation's gradient."""
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    rng = np.random.default_rng(seed)
    x = _images(rng, (batch, rows, cols, channels), dtype)
    m = _matrices(rng, kind, 1 if one_matrix else batch, rows, cols)
    fast = F.image_transform(x, m, fill_mode, interpolation, fill_value, output_shape)
    xg, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = F.image_transform(xg, m, fill_mode, interpolation, fill_value, output_shape)
    assert torch.equal(y.detach(), fast)
    r = torch.from_numpy(rng.standard_normal(tuple(y.shape))).to(dtype)
    (y * r).sum().backward()
    (old_image_transform(xo, m, fill_mode, interpolation, fill_value, output_shape)
     * r).sum().backward()
    assert torch.equal(xg.grad, xo.grad)


def test_gradcheck_float64():
    """The map is affine in the images, computed in float32 as TensorFlow's kernel does
    (float64 images too): finite differences over a large step are exact but for that
    rounding."""
    m = F.rotation_matrix(torch.tensor([0.3, -1.2]), 4, 5)
    x = torch.randn(2, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    for mode in F.FILL_MODES:
        for interp in F.TRANSFORM_INTERPOLATIONS:
            assert torch.autograd.gradcheck(
                lambda v: F.image_transform(v, m, mode, interp, 0.5), (x,), eps=0.5,
                atol=1e-5, rtol=1e-4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), batch=st.integers(1, 2),
       kind=st.sampled_from(["rotation", "zoom", "projective_infinite"]),
       fill_mode=st.sampled_from(F.FILL_MODES),
       interpolation=st.sampled_from(F.TRANSFORM_INTERPOLATIONS),
       dtype=st.sampled_from(["float16", "bfloat16"]),
       output_shape=st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(1, 9))),
       seed=st.integers(0, 2 ** 16))
def test_half_precision_equals_tensorflow(native, rows, cols, batch, kind, fill_mode,
                                          interpolation, dtype, output_shape, seed):
    """float16 / bfloat16 images (mixed policies) through the float32 routine: TensorFlow's
    kernel on those dtypes bit for bit."""
    tf = pytest.importorskip("tensorflow")
    from tf_keras.src.layers.preprocessing import image_preprocessing as tfk_image
    rng = np.random.default_rng(seed)
    x = _images(rng, (batch, rows, cols, 2), getattr(torch, dtype))
    m = _matrices(rng, kind, batch, rows, cols)
    want = tfk_image.transform(tf.cast(tf.constant(x.float().numpy()), dtype),
                               tf.constant(m.numpy()), fill_mode=fill_mode, fill_value=-1.3,
                               interpolation=interpolation, output_shape=output_shape)
    got = F.image_transform(x, m, fill_mode, interpolation, -1.3, output_shape)
    np.testing.assert_array_equal(got.float().numpy(), tf.cast(want, "float32").numpy())


# -- the other augmentations' training path, against their previous formulations -----------

@settings(max_examples=30, deadline=None, derandomize=True)
@given(mode=st.sampled_from(["horizontal", "vertical", "horizontal_and_vertical"]),
       batch=st.integers(0, 9), seed=st.integers(0, 1000), unbatched=st.booleans())
def test_flip_contrast_brightness_equal_their_previous_formulations(mode, batch, seed,
                                                                    unbatched):
    """RandomFlip's grouped copies (one torch.where per axis before), RandomContrast's
    and RandomBrightness' in-place arithmetic: the same numbers (and input gradients, to
    rounding) from the same draws (the previous formulation runs on a twin layer's
    generator)."""
    import sepconv
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-20, 280, (batch, 5, 6, 2)))
    x = (x[0] if unbatched and batch else x).requires_grad_()

    def previous_flip(layer, v):
        for axis, on in ((2, mode != "vertical"), (1, mode != "horizontal")):
            if on:
                flip = layer._rand((v.shape[0], 1, 1, 1), 0.0, 1.0, v) < 0.5
                v = torch.where(flip, v.flip(axis), v)
        return v

    def previous_contrast(layer, v):
        c = layer._rand((1, 1, 1, 1), 1.0 - layer.lower, 1.0 + layer.upper, v).to(v.dtype)
        mean = v.mean(dim=(1, 2), keepdim=True)
        return ((v - mean) * c + mean).clamp(*layer.value_range)

    def previous_brightness(layer, v):
        low, high = layer.value_range
        delta = layer._rand((v.shape[0], 1, 1, 1), *layer.factor, v) * float(high - low)
        return (v + delta.to(v.dtype)).clamp(low, high)

    for make, previous in ((lambda: sepconv.RandomFlip(mode, seed=seed, dtype="float64"),
                            previous_flip),
                           (lambda: sepconv.RandomContrast(0.7, seed=seed, dtype="float64"),
                            previous_contrast),
                           (lambda: sepconv.RandomBrightness(0.4, seed=seed,
                                                             dtype="float64"),
                            previous_brightness)):
        layer, twin = make().train(), make().train()
        for _ in range(2):  # the second call: the generators moved on alike
            y = layer(x)
            v = x[None] if x.dim() == 3 else x
            want = previous(twin, v)
            want = want[0] if x.dim() == 3 else want
            assert y.shape == x.shape and torch.equal(y, want)
            assert y.data_ptr() != x.data_ptr() or x.numel() == 0
            if x.numel():
                r = torch.randn_like(y)
                # the gradient through the contrast's mean sums in another order: float64
                # rounding apart
                torch.testing.assert_close(torch.autograd.grad((y * r).sum(), x)[0],
                                           torch.autograd.grad((want * r).sum(), x)[0],
                                           rtol=1e-13, atol=1e-11)


def test_small_augmentations_run_on_one_thread_and_restore_the_count(monkeypatch):
    import sepconv
    threads = torch.get_num_threads()
    seen = []
    layer = sepconv.RandomBrightness(0.2, seed=0).train()
    augment = type(layer)._augment

    def spy(self, x):
        seen.append(torch.get_num_threads())
        if x.shape[0] == 3:
            raise RuntimeError("boom")
        return augment(self, x)

    monkeypatch.setattr(type(layer), "_augment", spy)
    try:
        torch.set_num_threads(2)
        layer(torch.rand(2, 8, 8, 3))
        with pytest.raises(RuntimeError, match="boom"):
            layer(torch.rand(3, 8, 8, 3))
        assert torch.get_num_threads() == 2
        layer(torch.rand(1, 300, 300, 3))  # 270000 elements: the thread policy's choice
        assert seen[:2] == [1, 1] and len(seen) == 3
    finally:
        torch.set_num_threads(threads)
