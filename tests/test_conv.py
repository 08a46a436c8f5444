"""Conv1D/2D/3D and Conv1D/2D/3DTranspose without TensorFlow: numpy loops, finite
differences (gradcheck, float64), the layer protocol, the R functions, and the base-layer
fixes (``build()`` called directly; shape-argument messages)."""

from __future__ import annotations

import copy
import io
import itertools

import numpy as np
import pytest
import torch

import sepconv
from numpy_reference import conv as np_conv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CLASSES = [sepconv.Conv1D, sepconv.Conv2D, sepconv.Conv3D, sepconv.Conv1DTranspose,
           sepconv.Conv2DTranspose, sepconv.Conv3DTranspose]


def np_conv_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None,
                      dilation_rate=1, data_format="channels_last"):
    """TensorFlow's transposed convolution by its definition, with explicit loops: scatter
    every input position through the kernel into the padded output (the adjoint of the
    convolution from the output back to the input), then drop the padding.  The output
    length is tf-keras' ``deconv_output_length``, written out again here."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    rank = kernel.ndim - 2
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    s = (strides,) * rank if np.isscalar(strides) else tuple(strides)
    d = (dilation_rate,) * rank if np.isscalar(dilation_rate) else tuple(dilation_rate)
    op = (output_padding,) * rank if output_padding is None or np.isscalar(output_padding) \
        else tuple(output_padding)
    ks, filters = kernel.shape[:rank], kernel.shape[-2]
    out, pads = [], []
    for n, k, si, di, p in zip(x.shape[1:-1], ks, s, d, op):
        span = (k - 1) * di + 1
        if p is None:
            o = n * si + max(span - si, 0) if padding == "valid" else n * si
        else:
            o = (n - 1) * si + span - 2 * (span // 2 if padding == "same" else 0) + p
        total = 0 if padding == "valid" else max((-(-o // si) - 1) * si + span - o, 0)
        out.append(o)
        pads.append(total // 2)
    big = [o + 2 * p + max(ks) * max(d) + max(s) for o, p in zip(out, pads)]
    y = np.zeros((x.shape[0], *big, filters))
    for pos in np.ndindex(*x.shape[1:-1]):
        for tap in np.ndindex(*ks):
            idx = tuple(p * si + t * di for p, t, si, di in zip(pos, tap, s, d))
            y[(slice(None),) + idx] += x[(slice(None),) + pos] @ kernel[tap].T
    y = y[(slice(None),) + tuple(slice(p, p + o) for p, o in zip(pads, out))]
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if data_format == "channels_first":
        y = np.moveaxis(y, -1, 1)
    return y


def _random_weights(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.get_weights()])


def _expected(layer, x):
    w = layer.get_weights()
    b = w[1] if layer.use_bias else None
    if layer.TRANSPOSE:
        return np_conv_transpose(x, w[0], b, layer.strides, layer.padding,
                                 layer.output_padding, layer.dilation_rate, layer.data_format)
    return np_conv(x, w[0], b, layer.strides, layer.padding, layer.dilation_rate,
                   layer.groups, layer.data_format)


def _input(layer, spatial, channels, batch=2, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shape = ((batch, *spatial, channels) if layer.data_format == "channels_last"
             else (batch, channels, *spatial))
    return rng.standard_normal(shape).astype(dtype)


# -- numbers -------------------------------------------------------------------------------

NUMERIC_CASES = [  # class, kwargs, spatial, channels
    (sepconv.Conv1D, dict(kernel_size=3, padding="causal", dilation_rate=2), (9,), 2),
    (sepconv.Conv1D, dict(kernel_size=4, strides=3, padding="same", groups=2), (10,), 4),
    (sepconv.Conv2D, dict(kernel_size=(3, 2), strides=(2, 1), padding="same"), (7, 6), 3),
    (sepconv.Conv2D, dict(kernel_size=2, dilation_rate=(2, 1), groups=3), (6, 5), 3),
    (sepconv.Conv3D, dict(kernel_size=(2, 3, 2), strides=(1, 2, 2), padding="same"),
     (4, 5, 3), 2),
    (sepconv.Conv1DTranspose, dict(kernel_size=3, strides=2, padding="same"), (5,), 2),
    (sepconv.Conv1DTranspose, dict(kernel_size=4, strides=3, output_padding=2), (4,), 3),
    (sepconv.Conv1DTranspose, dict(kernel_size=3, dilation_rate=3, padding="same"), (6,), 2),
    (sepconv.Conv2DTranspose, dict(kernel_size=(3, 4), strides=(2, 3), padding="same",
                                   output_padding=(1, 2)), (3, 4), 2),
    (sepconv.Conv2DTranspose, dict(kernel_size=3, dilation_rate=(1, 2), padding="same"),
     (4, 5), 2),
    (sepconv.Conv2DTranspose, dict(kernel_size=1, strides=(3, 2)), (2, 3), 1),
    (sepconv.Conv3DTranspose, dict(kernel_size=2, strides=(2, 1, 2), padding="same"),
     (2, 3, 2), 2),
    (sepconv.Conv3DTranspose, dict(kernel_size=3, dilation_rate=(2, 1, 1)), (2, 2, 3), 1),
]


def _case_id(case):
    cls, kw, _, _ = case
    return cls.__name__ + "-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", NUMERIC_CASES, ids=_case_id)
def test_forward_matches_numpy_loops(case, fmt):
    cls, kw, spatial, channels = case
    layer = cls(filters=3 * kw.get("groups", 1), data_format=fmt, dtype="float64", **kw)
    x = _input(layer, spatial, channels)
    layer.build(x.shape)
    _random_weights(layer)
    want = _expected(layer, x)
    np.testing.assert_allclose(layer(x).detach().numpy(), want, atol=1e-12)
    assert layer.compute_output_shape(x.shape) == want.shape
    layer32 = cls.from_config(dict(layer.get_config(), dtype="float32"))
    layer32.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer32(x).detach().numpy(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cls,kw,spatial", [
    (sepconv.Conv2DTranspose, dict(kernel_size=3, strides=2, padding="same"), (9, 8)),
    (sepconv.Conv2DTranspose, dict(kernel_size=(3, 2), strides=2), (5, 6)),
    (sepconv.Conv1DTranspose, dict(kernel_size=4, strides=3, output_padding=2), (7,)),
    (sepconv.Conv1DTranspose, dict(kernel_size=2, strides=2, dilation_rate=1), (7,)),
    (sepconv.Conv3DTranspose, dict(kernel_size=3, strides=(2, 1, 2), padding="same"),
     (3, 4, 5)),
])
def test_late_bias_path_equals_the_fused_bias(cls, kw, spatial, fmt, monkeypatch):
    """The CPU rule that adds a transposed convolution's bias after the convolution (where
    oneDNN is slow with it fused) gives the fused path's output and gradients, on the
    shapes the rule picks and one it leaves (kernel == stride)."""
    from sepconv.kernels import reference
    torch.manual_seed(0)
    layer = cls(filters=5, data_format=fmt, bias_initializer="random_normal", **kw)
    x = torch.randn(2, *spatial, 3) if fmt == "channels_last" else torch.randn(2, 3, *spatial)
    x.requires_grad_(True)
    results = []
    for late in (True, False):
        monkeypatch.setattr(reference, "LATE_BIAS", late)
        y = layer(x)
        grads = torch.autograd.grad(y, [x, *layer.weights], torch.cos(y))
        results.append((y, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", NUMERIC_CASES, ids=_case_id)
def test_gradcheck_float64(case, fmt):
    cls, kw, spatial, channels = case
    torch.manual_seed(0)
    layer = cls(filters=2 * kw.get("groups", 1), data_format=fmt, dtype="float64",
                activation="tanh", bias_initializer="random_normal", **kw)
    x = torch.from_numpy(_input(layer, spatial, channels, batch=1)).requires_grad_(True)
    layer(x)
    params = list(layer.weights)

    def fn(x, *weights):
        return torch.func.functional_call(layer, dict(zip(layer._weight_order, weights)),
                                          (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_one_channel_non_contiguous_input_and_length_one_output_axes(cls):
    """torch 2.13's oneDNN trap: 1 channel, strides that also read as channels_last, a
    strided output axis of length 1 (``F.conv2d`` is off by ~8 there)."""
    rank = cls.RANK
    for fmt, strides, spatial in itertools.product(
            ["channels_last", "channels_first"], [(1,) * (rank - 1) + (2,), (2,) * rank],
            [(9, 5, 4)[:rank], (4,) * rank, (2,) * rank]):
        kernel = 4 if not cls.TRANSPOSE else 2
        if not cls.TRANSPOSE and min(spatial) < kernel:
            continue
        layer = cls(1, kernel, strides=strides, data_format=fmt, dtype="float32")
        base = torch.randn(2, *spatial, 1, dtype=torch.float64)
        x = base if fmt == "channels_last" else base.movedim(-1, 1)  # a view: odd strides
        layer.build(tuple(x.shape))
        _random_weights(layer, seed=3)
        want = _expected(layer, x.numpy())
        got = layer(x).detach().double().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        got = layer(x.float().clone()).detach().double().numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


# -- the layer protocol -----------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_weights_shapes_order_and_set_weights_errors(cls):
    rank = cls.RANK
    layer = cls(6, 3, input_shape=(None,) * rank + (4,),
                **({} if cls.TRANSPOSE else dict(groups=2)))
    assert layer.built and layer._weight_order == ["kernel", "bias"]
    want = (3,) * rank + ((6, 4) if cls.TRANSPOSE else (2, 6))
    assert [w.shape for w in layer.get_weights()] == [want, (6,)]
    with pytest.raises(ValueError, match="2 weights"):
        layer.set_weights(layer.get_weights()[:1])
    with pytest.raises(ValueError, match="kernel"):
        layer.set_weights([np.zeros((3,) * rank + (4, 4)), np.zeros(6)])
    no_bias = cls(6, 3, use_bias=False, input_shape=(None,) * rank + (4,))
    assert no_bias._weight_order == ["kernel"] and not hasattr(no_bias, "bias")
    # A lazy layer builds from set_weights (the kernel tells the channels).
    lazy = cls(6, 3, **({} if cls.TRANSPOSE else dict(groups=2)))
    lazy.set_weights(layer.get_weights())
    assert lazy.input_channels == 4


@pytest.mark.parametrize("cls", CLASSES + [sepconv.SeparableConv1D], ids=lambda c: c.__name__)
def test_build_called_directly_builds_once(cls):
    """``layer.build(shape)`` as Keras users call it: the layer is built, the first call
    makes no second set of weights, a second build changes nothing."""
    rank = getattr(cls, "RANK", 1)
    layer = cls(3, 2)
    layer.build((None,) * (rank + 1) + (2,))
    assert layer.built
    before = [w.copy() for w in layer.get_weights()]
    params = list(layer.parameters())
    layer(torch.randn(1, *(4,) * rank, 2))
    layer.build((None,) * (rank + 1) + (5,))
    assert list(layer.parameters()) == params
    assert len(layer.get_weights()) == len(before)
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_failed_build_leaves_no_weights():
    layer = sepconv.Conv2D(4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        layer.build((None, 5, 5, 3))
    assert not layer.built and list(layer.parameters()) == []
    layer.build((None, 5, 5, 4))
    assert len(layer.get_weights()) == 2


@pytest.mark.parametrize("cls,kw", [
    (sepconv.SeparableConv1D, dict(batch_input_shape=(4, 5))),
    (sepconv.Conv2D, dict(batch_input_shape=(4, 5, 3))),
    (sepconv.Conv3DTranspose, dict(batch_input_shape=(4, 5, 3))),
])
def test_shape_errors_name_the_argument_passed(cls, kw):
    with pytest.raises(ValueError, match=r"`batch_input_shape`.*batch_input_shape=\(4, 5"):
        cls(2, 3, **kw)
    with pytest.raises(ValueError, match=r"`input_shape`.*input_shape=\(5,"):
        cls(2, 3, input_shape=kw["batch_input_shape"][1:])
    with pytest.raises(ValueError, match="`input_shape`"):
        sepconv.Conv2D(2, 3, input_shape=(2, 2, 3))  # too small for a valid 3x3


@pytest.mark.parametrize("kwargs,error,argument", [
    (dict(filters=0), ValueError, "filters"),
    (dict(filters=2.5), ValueError, "filters"),
    (dict(filters="8"), TypeError, "filters"),
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(strides=(1, 0)), ValueError, "strides"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(padding="causal"), ValueError, "padding"),
    (dict(padding=1), TypeError, "padding"),
    (dict(data_format="NHWC"), ValueError, "data_format"),
    (dict(dilation_rate=(2, 1), strides=(1, 2)), ValueError, "dilation_rate > 1"),
    (dict(groups=0), ValueError, "groups"),
    (dict(groups=3), ValueError, "groups"),
    (dict(activation="nope"), ValueError, "activation"),
    (dict(use_bias=1), TypeError, "use_bias"),
    (dict(kernel_initializer=None), ValueError, "kernel_initializer"),
    (dict(kernel_regularizer="l3"), ValueError, "kernel_regularizer"),
    (dict(bias_constraint="nope"), ValueError, "bias_constraint"),
    (dict(dtype="int32"), ValueError, "dtype"),
])
def test_invalid_arguments_name_the_argument(kwargs, error, argument):
    args = dict(dict(filters=4, kernel_size=3), **kwargs)
    with pytest.raises(error, match=f"`{argument}`"):
        sepconv.Conv2D(**args)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(output_padding=2, strides=2), "output_padding"),
    (dict(output_padding=-1, strides=2), "output_padding"),
    (dict(output_padding=(1, 1), strides=2), "output_padding"),
    (dict(output_padding=0, strides=2, kernel_size=2, padding="same"), "output_padding"),
    (dict(padding="causal"), "padding"),
])
def test_invalid_transpose_arguments(kwargs, argument):
    args = dict(dict(filters=4, kernel_size=3), **kwargs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        sepconv.Conv1DTranspose(**args)


def test_wrong_input_raises_naming_shapes():
    layer = sepconv.Conv2D(4, 3, input_shape=(None, None, 2))
    with pytest.raises(ValueError, match=r"\(None, None, None, 2\)"):
        layer(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match="rank|shape"):
        layer(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r"\(1, 2, 5, 2\)"):
        layer(torch.zeros(1, 2, 5, 2))  # an output axis of length 0
    with pytest.raises(TypeError):
        layer(torch.zeros(1, 5, 5, 2, dtype=torch.complex64))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_round_trip_state_dict_and_copies(cls):
    rank = cls.RANK
    kw = dict(filters=4, kernel_size=2, strides=2, padding="same", activation="relu",
              kernel_regularizer="l2", kernel_constraint="max_norm", name=f"rt_{cls.__name__}",
              data_format="channels_first", input_shape=(2,) + (None,) * rank)
    if cls.TRANSPOSE:
        kw["output_padding"] = 1
    layer = cls(**kw)
    _random_weights(layer)
    config = layer.get_config()
    again = cls.from_config(dict(config, name=config["name"] + "_2"))
    assert {k: v for k, v in again.get_config().items() if k != "name"} == \
        {k: v for k, v in config.items() if k != "name"}
    assert sepconv.layers.base.get_layer_class(cls.__name__) is cls
    state = layer.state_dict()
    lazy = cls(**dict(kw, input_shape=None, name=None))
    lazy.load_state_dict(state)
    x = torch.randn(2, 2, *(3,) * rank)
    torch.testing.assert_close(lazy(x), layer(x), rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    for other in (copy.deepcopy(layer), torch.load(buf, weights_only=False)):
        torch.testing.assert_close(other(x), layer(x), rtol=0, atol=0)


def test_extra_repr():
    assert repr(sepconv.Conv2D(8, 3, strides=2, padding="same", groups=2, name="r1")) == (
        "Conv2D(?, 8, kernel_size=(3, 3), strides=(2, 2), padding='same', groups=2, "
        "name='r1')")
    layer = sepconv.Conv1DTranspose(4, 3, strides=2, output_padding=1, activation="relu",
                                    input_shape=(None, 5), name="r2")
    assert repr(layer) == ("Conv1DTranspose(5, 4, kernel_size=(3,), strides=(2,), "
                           "output_padding=(1,), activation='relu', name='r2')")


def test_numpy_float64_input_into_float32_layer_gives_float32():
    layer = sepconv.Conv3D(2, 2)
    y = layer(np.random.default_rng(0).standard_normal((1, 3, 3, 3, 2)))
    assert y.dtype == torch.float32


def test_mixed_policy_keeps_float32_weights():
    layer = sepconv.Conv2DTranspose(2, 3, dtype="mixed_bfloat16", input_shape=(None, None, 3))
    assert layer.kernel.dtype == torch.float32
    assert layer(torch.randn(1, 4, 4, 3)).dtype == torch.bfloat16


def test_constraints_hold_after_an_optimizer_step():
    layer = sepconv.Conv2D(3, 2, kernel_constraint="non_neg", input_shape=(None, None, 2))
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    layer(torch.randn(2, 4, 4, 2)).sum().backward()
    opt.step()
    assert (layer.kernel >= 0).all()


def test_trainable_false():
    layer = sepconv.Conv1DTranspose(2, 3, trainable=False, input_shape=(None, 2))
    assert not any(p.requires_grad for p in layer.parameters())


def test_regularization_loss_sums_the_penalties():
    layer = sepconv.Conv2D(3, 2, kernel_regularizer="l2", bias_regularizer="l1",
                           activity_regularizer="l1", bias_initializer="ones",
                           input_shape=(None, None, 2))
    y = layer(torch.randn(4, 3, 3, 2))
    want = 0.01 * layer.kernel.square().sum() + 0.01 * layer.bias.abs().sum() + \
        0.01 * y.abs().sum() / 4
    torch.testing.assert_close(sepconv.regularization_loss(torch.nn.Sequential(layer)), want)


# -- R functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_r_functions_coerce_doubles_and_compose(cls):
    rank = cls.RANK
    f = getattr(sepconv, sepconv.r.r_name(cls.__name__))
    layer = f(filters=4.0, kernel_size=[3.0] * rank, strides=[1.0] * rank, padding="same",
              input_shape=[None] * rank + [2.0])
    assert isinstance(layer, cls) and layer.kernel_size == (3,) * rank
    assert layer.filters == 4 and isinstance(layer.filters, int) and layer.input_channels == 2
    model = torch.nn.Sequential()
    assert f(model, filters=2, kernel_size=1, input_shape=[None] * rank + [3.0]) is model
    x = np.random.default_rng(0).standard_normal((2,) + (3,) * rank + (3,))
    y = f(x, filters=2.0, kernel_size=1.0)
    assert y.shape == (2,) + (3,) * rank + (2,)
    with pytest.raises(ValueError, match="filters"):
        f(filters=2.5, kernel_size=3)
    with pytest.raises(ValueError, match="filters"):
        f(kernel_size=3)
    if cls.TRANSPOSE:
        assert f(filters=2, kernel_size=3, strides=2.0, output_padding=1.0).output_padding == \
            (1,) * rank
    else:
        assert f(filters=4, kernel_size=3, groups=2.0).groups == 2


def test_readme_style_2d_model_the_r_way():
    model = torch.nn.Sequential()
    sepconv.layer_conv_2d(model, filters=8, kernel_size=c(3, 3), activation="relu",
                          padding="same", input_shape=c(None, None, 3))
    sepconv.layer_conv_2d(model, filters=16, kernel_size=c(3, 3), strides=c(2, 2),
                          padding="same", activation="relu")
    sepconv.layer_conv_2d_transpose(model, filters=8, kernel_size=c(3, 3), strides=c(2, 2),
                                    padding="same")
    assert model(torch.randn(2, 32, 32, 3)).shape == (2, 32, 32, 8)


def c(*values):
    """R's ``c()``: numbers arrive as doubles."""
    return [None if v is None else float(v) for v in values]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("filters,channels", [(1, 2), (1, 1), (2, 1), (3, 2)])
def test_float32_gradients_on_tiny_shapes(cls, filters, channels):
    """torch 2.13 picks other CPU convolutions for tiny float32 shapes (slow_conv2d failed
    in backward on a non-contiguous weight there); gradients must equal the float64 ones
    (gradcheck-verified above)."""
    rank = cls.RANK
    for fmt, strides in itertools.product(["channels_last", "channels_first"], [1, 2]):
        layer64 = cls(filters, 2, strides=strides, padding="same", data_format=fmt,
                      dtype="float64")
        x = torch.from_numpy(_input(layer64, (1,) + (2,) * (rank - 1), channels, batch=1))
        layer64.build(tuple(x.shape))
        _random_weights(layer64, seed=5)
        layer32 = cls.from_config(dict(layer64.get_config(), dtype="float32"))
        layer32.set_weights(layer64.get_weights())
        grads = []
        for layer, xx in ((layer64, x), (layer32, x.float())):
            xx = xx.clone().requires_grad_(True)
            y = layer(xx)
            grads.append(torch.autograd.grad((y * y).sum(), [xx] + layer.weights))
        for g64, g32 in zip(*grads):
            np.testing.assert_allclose(g32.double().numpy(), g64.numpy(), atol=1e-5,
                                       rtol=1e-5)


def test_one_input_channel_keeps_the_fast_layout_and_the_right_numbers():
    # oneDNN misreads a 1-channel input's channels_last strides only where a strided axis
    # has one output: only there the reference kernel copies it row-major (3-12x slower
    # elsewhere). Both sides of the rule against a row-major float64 computation.
    from sepconv.kernels import reference
    torch.manual_seed(0)
    for h, w, k, s, p in [(5, 4, (3, 3), (1, 2), (1, 0)), (6, 9, (3, 3), (2, 2), (1, 1)),
                          (1, 40, (1, 10), (1, 5), (0, 0)), (4, 1, (3, 1), (1, 3), (1, 0)),
                          (32, 64, (1, 16), (1, 1), (0, 7))]:
        x = torch.randn(2, h, w, 1, requires_grad=True)
        kernel = torch.randn(*k, 1, 3, requires_grad=True)
        y = reference.conv(x, kernel, None, strides=s, dilation=(1, 1),
                           pads=((p[0], p[0]), (p[1], p[1])), groups=1, channels_last=True)
        x64 = x.detach().double().movedim(-1, 1).contiguous().requires_grad_()
        w64 = kernel.detach().double().permute(3, 2, 0, 1).contiguous().requires_grad_()
        want = torch.nn.functional.conv2d(x64, w64, stride=s, padding=p).movedim(1, -1)
        torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
        dy = torch.randn(y.shape)
        gx, gw = torch.autograd.grad(y, (x, kernel), dy)
        wx, ww = torch.autograd.grad(want, (x64, w64), dy.double())
        torch.testing.assert_close(gx.double(), wx.movedim(1, -1), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gw.double(), ww.permute(2, 3, 1, 0), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("kernel,strides,output_padding", [(1, 3, 2), (1, 2, 1), (2, 3, 2)])
def test_output_padding_past_the_kernel_is_bias_rows(kernel, strides, output_padding):
    """Conv2DTranspose whose ``output_padding`` reaches past the kernel's extent: the last
    rows and columns no tap reaches hold the bias alone; output and gradients equal torch's
    transposed convolution on plain NCHW float64 tensors (torch 2.13's channels_last CPU
    weight gradient with such an output_padding corrupted the heap: the fuzz tests crashed)."""
    g = torch.Generator().manual_seed(0)
    layer = sepconv.Conv2DTranspose(2, kernel, strides=strides, output_padding=output_padding,
                                    bias_initializer="random_normal", dtype="float64")
    x = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for _ in range(20):  # (the corruption showed after a few calls)
        y = layer(x)
        got = torch.autograd.grad(y.sum(), [x, layer.kernel, layer.bias])
    w = layer.kernel.detach().permute(3, 2, 0, 1).clone().requires_grad_(True)  # (in, f, k, k)
    b = layer.bias.detach().clone().requires_grad_(True)
    xr = x.detach().permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    want = torch.nn.functional.conv_transpose2d(xr, w, b, stride=strides,
                                                output_padding=output_padding)
    torch.testing.assert_close(y.detach(), want.detach().permute(0, 2, 3, 1))
    gx, gw, gb = torch.autograd.grad(want.sum(), [xr, w, b])
    torch.testing.assert_close(got[0], gx.permute(0, 2, 3, 1))
    torch.testing.assert_close(got[1], gw.permute(2, 3, 1, 0))
    torch.testing.assert_close(got[2], gb)
