"""Keras masks without TensorFlow: ``Masking``, ``Embedding(mask_zero=True)``, the masked
recurrences (gradcheck), ``sepconv.Sequential`` and the rules of mask propagation, checked
against hand-computed values (tf-keras parity: test_parity_masking_tfkeras.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sepconv
from sepconv import functional as F
from sepconv.interop import keras_ops
from sepconv.layers.masking import call_with_mask

pytestmark = pytest.mark.usefixtures("torch_single_thread")

MASK = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)


def test_masking_zeroes_steps_whose_features_all_equal_mask_value():
    x = torch.tensor([[[1.0, 2.0], [0.5, 0.5], [0.5, 1.0]]])
    layer = sepconv.Masking(mask_value=0.5)
    np.testing.assert_array_equal(layer(x).numpy(), [[[1, 2], [0, 0], [0.5, 1]]])
    np.testing.assert_array_equal(layer.compute_mask(x).numpy(), [[True, False, True]])
    assert layer(x.numpy().astype(np.float64)).dtype == torch.float32
    again = sepconv.Masking.from_config(layer.get_config())
    assert again.mask_value == 0.5 and layer.get_config()["mask_value"] == 0.5
    assert sepconv.layer_masking(mask_value=2).mask_value == 2.0  # an R double
    with pytest.raises(TypeError, match="mask_value"):
        sepconv.Masking(mask_value="zero")
    with pytest.raises(ValueError, match="rank >= 2"):
        layer(torch.zeros(3))


def test_embedding_mask_zero_is_inputs_not_zero():
    ids = torch.tensor([[3, 0, 2], [0, 0, 1]])
    emb = sepconv.Embedding(5, 2, mask_zero=True)
    np.testing.assert_array_equal(emb.compute_mask(ids).numpy(), (ids != 0).numpy())
    assert emb.supports_masking and not sepconv.Embedding(5, 2).supports_masking
    assert sepconv.Embedding(5, 2).compute_mask(ids) is None


def _loop_lstm(x, k, rk, b, mask, go_backwards=False, zero=False):
    """Keras' masked LSTM written step by step (the reference for the functional op)."""
    batch, steps, _ = x.shape
    units = rk.shape[0]
    h = c = out = torch.zeros(batch, units, dtype=x.dtype)
    outs = []
    for t in (range(steps - 1, -1, -1) if go_backwards else range(steps)):
        z = x[:, t] @ k + h @ rk + b
        i, f, g, o = z.chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        keep = mask[:, t:t + 1]
        out = torch.where(keep, h_new, torch.zeros_like(out) if zero else out)
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        outs.append(out)
    return torch.stack(outs, 1), h, c


@pytest.mark.parametrize("go_backwards,zero", [(False, False), (True, True)])
def test_functional_lstm_mask_against_a_step_loop_and_gradcheck(go_backwards, zero):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 8, dtype=torch.float64, generator=g, requires_grad=True)
    rk = torch.randn(2, 8, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, generator=g, requires_grad=True)
    got = F.lstm(x, k, rk, b, mask=MASK, go_backwards=go_backwards, return_sequences=True,
                 zero_output_for_mask=zero)
    want = _loop_lstm(x, k, rk, b, MASK, go_backwards, zero)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=0, atol=1e-12)
    assert torch.all(got[0][2] == 0) and torch.all(got[1][2] == 0)  # all-padding row
    torch.autograd.gradcheck(
        lambda *a: F.lstm(*a, mask=MASK, go_backwards=go_backwards, return_sequences=True,
                          zero_output_for_mask=zero)[0], (x, k, rk, b))
    for fn, gates in ((F.gru, 3), (F.simple_rnn, 1)):
        kk = torch.randn(2, 2 * gates, dtype=torch.float64, generator=g, requires_grad=True)
        rr = torch.randn(2, 2 * gates, dtype=torch.float64, generator=g, requires_grad=True)
        torch.autograd.gradcheck(lambda *a: fn(*a, mask=MASK, go_backwards=go_backwards)[0],
                                 (x, kk, rr))
    with pytest.raises(ValueError, match="mask"):
        F.lstm(x, k, rk, b, mask=MASK[:, :3])


def test_layer_mask_argument_and_output_mask():
    lstm = sepconv.LSTM(3, return_sequences=True)
    x = torch.randn(3, 4, 2)
    y = lstm(x, mask=MASK.numpy())  # numpy masks and 0/1 masks work too
    torch.testing.assert_close(lstm(x, mask=MASK.int()), y)
    assert torch.all(y[2] == 0) and torch.equal(y[0, 3], y[0, 2])
    assert lstm.compute_mask(x, MASK) is MASK
    assert sepconv.GRU(2).compute_mask(x, MASK) is None
    assert sepconv.GRU(2, return_state=True).compute_mask(x, MASK) == [None, None]
    with pytest.raises(ValueError, match="mask"):
        lstm(x, mask=MASK[:2])
    bidi = sepconv.Bidirectional(sepconv.GRU(2, return_sequences=True), merge_mode=None)
    out = bidi(x, mask=MASK)
    assert bidi.compute_mask(x, MASK) == [MASK, MASK]
    assert all(torch.all(o[~MASK] == 0) for o in out)


def test_global_average_pooling_1d_masked_mean_and_no_output_mask():
    x = torch.arange(24, dtype=torch.float32).reshape(3, 4, 2)
    gap = sepconv.GlobalAveragePooling1D()
    y = gap(x, mask=MASK)
    torch.testing.assert_close(y[0], x[0, :3].mean(0))
    torch.testing.assert_close(y[1], x[1, [1, 3]].mean(0))
    assert torch.isnan(y[2]).all()  # 0 / 0, as tf-keras
    torch.testing.assert_close(gap(x), x.mean(1))
    cf = sepconv.GlobalAveragePooling1D(data_format="channels_first", keepdims=True)
    torch.testing.assert_close(cf(x.transpose(1, 2), mask=MASK)[:2, :, 0], y[:2])
    assert gap.compute_mask(x, MASK) is None


def test_merge_masks_and_unsupported_layers():
    a, b = torch.zeros(3, 4, 2), torch.zeros(3, 4, 5)
    other = torch.tensor([[1, 0, 1, 1]] * 3, dtype=torch.bool)
    assert torch.equal(sepconv.Add().compute_mask([a, a], [MASK, other]), MASK & other)
    assert torch.equal(sepconv.Add().compute_mask([a, a], [None, other]), other)
    assert sepconv.Add().compute_mask([a, a], [None, None]) is None
    cat = sepconv.Concatenate()
    assert torch.equal(cat.compute_mask([a, b], [MASK, other]), MASK & other)
    assert torch.equal(cat.compute_mask([a, b], [MASK, None]), MASK)
    assert torch.equal(sepconv.Concatenate(axis=1).compute_mask([a, a], [MASK, other]),
                       torch.cat([MASK, other], 1))
    with pytest.raises(ValueError, match="list"):
        sepconv.Add().compute_mask([a, a], MASK)
    conv = sepconv.Conv1D(2, 1)
    with pytest.raises(TypeError, match="does not support masking"):
        conv.compute_mask(a, MASK)
    assert conv.compute_mask(a, None) is None
    y, m = call_with_mask(conv, (a,), {}, MASK)  # a model drops the mask there
    assert m is None and y.shape == (3, 4, 2)
    dense = sepconv.Dense(3)
    y, m = call_with_mask(dense, (a,), {}, MASK)
    assert m is MASK


def test_sequential_carries_masks_as_keras():
    torch.manual_seed(0)
    emb = sepconv.Embedding(6, 3, mask_zero=True)
    lstm = sepconv.LSTM(4, return_sequences=True)
    ln = sepconv.LayerNormalization()
    gap = sepconv.GlobalAveragePooling1D()
    model = sepconv.Sequential(emb, sepconv.Dropout(0.5), lstm, ln, gap,
                               sepconv.Dense(1)).eval()
    ids = torch.tensor([[1, 2, 0, 0], [3, 0, 4, 5]])
    m = ids != 0
    want = model[5](gap(ln(lstm(emb(ids), mask=m)), mask=m))
    torch.testing.assert_close(model(ids), want)
    assert isinstance(model, torch.nn.Sequential)
    plain = torch.nn.Sequential(*model)  # a plain Sequential knows no masks
    assert not torch.allclose(plain(ids), want)
    # R: layer_* functions append to it like to any torch.nn.Sequential
    seq = sepconv.Sequential()
    sepconv.layer_masking(seq, mask_value=0, input_shape=(4, 2))
    sepconv.layer_gru(seq, units=2)
    x = torch.randn(2, 4, 2)
    x[0, 2:] = 0
    torch.testing.assert_close(seq(x)[0], seq[1](x[:1, :2])[0])
    torch.testing.assert_close(seq(x, mask=torch.ones(2, 4, dtype=torch.bool)), seq(x))


def test_keras3_mask_operations():
    x = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    ne = keras_ops.build_op({"class_name": "NotEqual", "module": "keras.src.ops.numpy",
                             "config": {"name": "not_equal"}})
    anyop = keras_ops.build_op({"class_name": "Any", "module": "keras.src.ops.numpy",
                                "config": {"name": "any", "axis": -1, "keepdims": False}})
    m = anyop(ne(x, 0))
    assert m.tolist() == [[True, False]]
    orop = keras_ops.build_op({"class_name": "LogicalOr", "config": {}})
    assert orop(m, ~m).all()
    assert keras_ops.build_op({"class_name": "Erfinv", "config": {}}) is None
    assert keras_ops.is_op({"module": "keras.src.ops.numpy"})
    assert not keras_ops.is_op({"module": "keras.layers"})
