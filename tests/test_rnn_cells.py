"""RNN and its cells without TensorFlow: streaming (``sepconv.stream``) against the whole
sequence over many chunkings, the generic step-by-step loop against the whole-sequence
recurrences (masks, go_backwards, initial states), gradcheck, the Keras layer protocol
(state_dict, dtypes, numpy inputs, penalties, config round trips, Sequential masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sepconv

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _split(length, cuts):
    bounds = sorted({min(c, length) for c in cuts} | {0, length})
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    return sizes[:1] + [0] + sizes[1:] if sizes else [length]


class _UserCell(torch.nn.Module):
    """A Keras-style custom cell: RNN calls it step by step."""

    def __init__(self, cell):
        super().__init__()
        self.inner = cell
        self.state_size = cell.state_size
        self.output_size = cell.units

    def forward(self, inputs, states, training=None):
        return self.inner(inputs, states, training=training)


def _cell(kind, units, dtype):
    if kind == "LSTMCell":
        return sepconv.LSTMCell(units, bias_initializer="random_normal", dtype=dtype)
    if kind == "GRU_before":
        return sepconv.GRUCell(units, reset_after=False, bias_initializer="random_normal",
                               dtype=dtype)
    if kind == "GRUCell":
        return sepconv.GRUCell(units, bias_initializer="random_normal", dtype=dtype)
    return sepconv.SimpleRNNCell(units, bias_initializer="random_normal", dtype=dtype)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(kinds=st.lists(st.sampled_from(["LSTMCell", "GRUCell", "GRU_before", "SimpleRNNCell"]),
                      min_size=1, max_size=3),
       user=st.booleans(), last_sequences=st.booleans(), length=st.integers(1, 20),
       cuts=st.lists(st.integers(0, 20), max_size=5),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_rnn_streams_exactly(kinds, user, last_sequences, length, cuts, dtype):
    """Causal Conv1D -> RNN over cells (a stack, or a user cell run step by step) -> Dense:
    the chunks' outputs concatenate to the whole sequence's (return_sequences), or each
    chunk gives the model's output on the sequence so far."""
    torch.manual_seed(9)
    cells = [_cell(k, 4, dtype) for k in kinds]
    cell = cells[0] if len(cells) == 1 else cells
    if user:
        cell = _UserCell(_cell(kinds[0], 4, dtype))
    model = torch.nn.Sequential(
        sepconv.Conv1D(3, 2, padding="causal", dtype=dtype, input_shape=(None, 2)),
        sepconv.RNN(cell, return_sequences=last_sequences, dtype=dtype),
        sepconv.Dense(2, dtype=dtype)).eval()
    x = torch.randn(2, length, 2, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        stream, start, outs = sepconv.stream(model), 0, []
        for n in _split(length, cuts):
            got = stream(x[:, start:start + n])
            start += n
            if last_sequences:
                outs.append(got)
            elif start:
                torch.testing.assert_close(got, model(x[:, :start]), rtol=tol, atol=tol)
        if last_sequences:
            torch.testing.assert_close(torch.cat(outs, 1), model(x), rtol=tol, atol=tol)


def test_rnn_stream_refusals_name_the_layer():
    for layer, message in ((sepconv.RNN(sepconv.GRUCell(2), go_backwards=True),
                            "go_backwards"),
                           (sepconv.RNN(sepconv.GRUCell(2), time_major=True), "time_major"),
                           (sepconv.RNN(sepconv.GRUCell(2), return_state=True),
                            "return_state")):
        with pytest.raises(ValueError, match=message):
            sepconv.stream(torch.nn.Sequential(layer))
    model = torch.nn.Sequential(sepconv.RNN(sepconv.LSTMCell(2, dropout=0.5)))
    with pytest.raises(ValueError, match="dropout"):
        sepconv.stream(model)(torch.randn(1, 3, 2))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["LSTMCell", "GRUCell", "GRU_before", "SimpleRNNCell"]),
       go_backwards=st.booleans(), zero=st.booleans(), sequences=st.booleans(),
       masked=st.booleans(), with_state=st.booleans())
def test_step_by_step_loop_equals_the_whole_sequence_recurrence(kind, go_backwards, zero,
                                                               sequences, masked,
                                                               with_state):
    """The same cell run by RNN's generic loop (wrapped as a user cell) and by the
    whole-sequence recurrence (functional.lstm / gru / simple_rnn, fused path included)."""
    torch.manual_seed(10)
    cell = _cell(kind, 3, torch.float64)
    flags = dict(return_sequences=sequences, return_state=True, go_backwards=go_backwards,
                 zero_output_for_mask=zero, dtype="float64")
    fast = sepconv.RNN(cell, **flags)
    slow = sepconv.RNN(_UserCell(cell), **flags)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    mask = (torch.rand(3, 6) < 0.6) if masked else None
    state = [torch.randn(3, 3, dtype=torch.float64)
             for _ in range(2 if kind == "LSTMCell" else 1)] if with_state else None
    for a, b in zip(fast(x, mask=mask, initial_state=state),
                    slow(x, mask=mask, initial_state=state)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "GRU_before", "SimpleRNNCell"])
def test_gradcheck_cell_and_rnn(kind):
    torch.manual_seed(11)
    cell = _cell(kind, 2, torch.float64)
    cell.build((None, 3))
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
              for _ in range(2 if kind == "LSTMCell" else 1)]

    def step(x, *states):
        out, new = cell(x, list(states))
        return (out, *new)
    assert torch.autograd.gradcheck(step, (x, *states))
    layer = sepconv.RNN(cell, return_sequences=True, go_backwards=True, dtype="float64")
    seq = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda s: layer(s, mask=mask), (seq,))


def test_layer_protocol():
    torch.manual_seed(12)
    layer = sepconv.RNN([sepconv.GRUCell(3, kernel_regularizer="l2"),
                         sepconv.LSTMCell(2, recurrent_constraint="non_neg")],
                        return_sequences=True, input_shape=(None, 4))
    assert layer.built and [tuple(w.shape) for w in layer.get_weights()] == \
        [(4, 9), (3, 9), (2, 9), (3, 8), (2, 8), (8,)]
    # state_dict round trip into an unbuilt twin
    twin = sepconv.RNN.from_config(layer.get_config())
    twin.load_state_dict(layer.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 5, 4))  # float64 numpy: cast
    y = layer(x)
    assert y.dtype == torch.float32 and y.shape == (2, 5, 2)
    torch.testing.assert_close(twin(x), y)
    assert layer.compute_output_shape((2, 5, 4)) == (2, 5, 2)
    # the cells' penalties count once in regularization_loss (the layer adds none)
    assert layer.losses == []
    total = sepconv.regularization_loss(layer)
    torch.testing.assert_close(total, layer.cell.cells[0].losses[0])
    # constraints hold after an optimizer step
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    layer(x).sum().backward()
    opt.step()
    assert (layer.cell.cells[1].recurrent_kernel >= 0).all()
    # trainable=False freezes every cell
    frozen = sepconv.RNN([sepconv.GRUCell(2), sepconv.LSTMCell(2)], trainable=False)
    frozen(torch.zeros(1, 2, 3))
    assert not any(p.requires_grad for p in frozen.parameters())
    assert "return_sequences=True" in repr(layer) and "GRUCell(4, 3" in repr(layer)


@pytest.mark.parametrize("dtype", ["float64", "mixed_float16", "mixed_bfloat16"])
def test_dtype_policies(dtype):
    layer = sepconv.RNN(sepconv.LSTMCell(3, dtype=dtype), dtype=dtype)
    y = layer(torch.randn(2, 4, 5))
    compute = {"float64": torch.float64, "mixed_float16": torch.float16,
               "mixed_bfloat16": torch.bfloat16}[dtype]
    assert y.dtype == compute
    assert layer.cell.kernel.dtype == (torch.float64 if dtype == "float64" else torch.float32)


def test_sequential_passes_embedding_masks():
    torch.manual_seed(13)
    emb = sepconv.Embedding(10, 4, mask_zero=True)
    rnn = sepconv.RNN(sepconv.GRUCell(3))
    model = sepconv.Sequential(emb, rnn)
    ids = torch.tensor([[3, 4, 0, 0], [1, 2, 5, 0]])
    want = rnn(emb(ids), mask=ids != 0)
    torch.testing.assert_close(model(ids), want)
    torch.testing.assert_close(model(ids)[0], rnn(emb(ids[:1, :2]))[0])


def test_cell_dropout_in_training_is_random_and_eval_is_not():
    torch.manual_seed(14)
    cell = sepconv.LSTMCell(3, dropout=0.5, recurrent_dropout=0.5, input_shape=(4,))
    x = torch.randn(2, 4)
    state = cell.get_initial_state(batch_size=2)
    assert [tuple(s.shape) for s in state] == [(2, 3), (2, 3)]
    cell.train()
    a, _ = cell(x, state)
    b, _ = cell(x, state)
    assert not torch.equal(a, b)
    cell.eval()
    a, _ = cell(x, state)
    b, _ = cell(x, state)
    assert torch.equal(a, b)


def test_module_dtype_changes_reach_the_layer():
    """``.double()`` casts the cells' weights; the layer then computes in float64 (a torch
    user's expectation), stacks and Bidirectional included."""
    for layer in (sepconv.RNN(sepconv.LSTMCell(3)),
                  sepconv.RNN([sepconv.GRUCell(2), sepconv.SimpleRNNCell(3)]),
                  sepconv.Bidirectional(sepconv.RNN(sepconv.GRUCell(2)))):
        layer(torch.randn(2, 4, 5))
        layer.double()
        y = layer(torch.randn(2, 4, 5))
        assert y.dtype == torch.float64
