"""LSTM, GRU, SimpleRNN, Bidirectional: the layer protocol in torch alone (gradcheck,
validation, R functions, state_dict, dtypes), and a CNN-LSTM model file written by
tf-keras 2.21 (.h5) and Keras 3 (.keras), loaded by sepconv with TensorFlow and Keras
blocked, then written back by sepconv and read by each Keras."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import sepconv
from sepconv import functional as F

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _weights64(layer, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape) * scale for w in layer.get_weights()])


@pytest.mark.parametrize("make", [
    lambda: sepconv.LSTM(2, return_sequences=True, dtype="float64"),
    lambda: sepconv.LSTM(2, go_backwards=True, use_bias=False, dtype="float64"),
    lambda: sepconv.GRU(2, dtype="float64"),
    lambda: sepconv.GRU(2, reset_after=False, return_sequences=True, dtype="float64"),
    lambda: sepconv.SimpleRNN(2, dtype="float64"),
    lambda: sepconv.Bidirectional(sepconv.GRU(2, return_sequences=True, dtype="float64")),
])
def test_gradcheck_input_and_weights(make):
    layer = make()
    layer.build((None, None, 3))
    _weights64(layer)
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x,))
    params = {n: p.detach() for n, p in layer.named_parameters()}
    assert len(params) == len(layer.get_weights())
    for name, p in params.items():
        def g(w, name=name):
            return torch.func.functional_call(layer, {**params, name: w}, (x.detach(),))
        assert torch.autograd.gradcheck(g, (p.clone().requires_grad_(True),)), name


def test_functional_masks_one_per_gate_shared_by_steps():
    """functional.lstm's per-gate masks equal running each gate on its masked input."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    k = torch.randn(3, 8, dtype=torch.float64)
    rk = torch.randn(2, 8, dtype=torch.float64)
    mask = torch.bernoulli(torch.full((4, 2, 3), 0.5, dtype=torch.float64)) * 2
    out, h, c = F.lstm(x, k, rk, dropout_mask=mask, return_sequences=True)
    # reference: four separate LSTMs' input terms stitched together by hand
    hs, cs, ref = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2,
                                                                      dtype=torch.float64), []
    for t in range(4):
        z = torch.cat([(x[:, t] * mask[g]) @ k[:, 2 * g:2 * g + 2] for g in range(4)], 1)
        z = z + hs @ rk
        i, f, g_, o = z.chunk(4, 1)
        cs = torch.sigmoid(f) * cs + torch.sigmoid(i) * torch.tanh(g_)
        hs = torch.sigmoid(o) * torch.tanh(cs)
        ref.append(hs)
    torch.testing.assert_close(out, torch.stack(ref, 1))
    torch.testing.assert_close((h, c), (hs, cs))


def test_validation_messages_name_the_argument():
    with pytest.raises(ValueError, match="units"):
        sepconv.LSTM(0)
    with pytest.raises(ValueError, match="units"):
        sepconv.GRU(2.5)
    with pytest.raises(TypeError, match="return_sequences"):
        sepconv.SimpleRNN(2, return_sequences="yes")
    with pytest.raises(ValueError, match="dropout"):
        sepconv.LSTM(2, dropout=1.0)
    with pytest.raises(TypeError, match="time_major"):
        sepconv.LSTM(2, time_major="yes")
    with pytest.raises(ValueError, match="merge_mode"):
        sepconv.Bidirectional(sepconv.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        sepconv.Bidirectional(sepconv.LSTM(2), backward_layer=sepconv.LSTM(2))
    with pytest.raises(ValueError, match="return_sequences"):
        sepconv.Bidirectional(sepconv.LSTM(2), backward_layer=sepconv.LSTM(
            2, go_backwards=True, return_sequences=True))
    with pytest.raises(ValueError, match="layer"):
        sepconv.Bidirectional(sepconv.Dense(2))
    layer = sepconv.LSTM(2, input_shape=(None, 3))
    with pytest.raises(ValueError, match="3 features"):
        layer(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="initial_state"):
        layer(torch.zeros(1, 2, 3), initial_state=[torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="mask"):  # masks are (batch, time)
        layer(torch.zeros(1, 2, 3), mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="expects 3 weights"):
        layer.set_weights(layer.get_weights()[:2])
    with pytest.raises(AttributeError, match="stateful"):
        layer.reset_states()


def test_r_functions_and_from_config_round_trip():
    model = torch.nn.Sequential()
    sepconv.layer_lstm(model, units=4.0, return_sequences=True, input_shape=(None, 3.0))
    sepconv.bidirectional(model, sepconv.layer_gru(units=2, return_sequences=True),
                          merge_mode="sum")
    sepconv.layer_simple_rnn(model, units=3)
    y = model(np.random.default_rng(0).standard_normal((2, 5, 3)))
    assert tuple(y.shape) == (2, 3) and y.dtype == torch.float32  # numpy float64 cast
    with pytest.raises(ValueError, match="units"):
        sepconv.layer_lstm(units=None)
    for layer in model:
        again = type(layer).from_config(layer.get_config())
        again.build((None, None, layer.get_weights()[0].shape[0]))
        again.set_weights(layer.get_weights())
        assert again.get_config() == layer.get_config()
        torch.testing.assert_close(again(torch.ones(1, 2, again.get_weights()[0].shape[0])),
                                   layer(torch.ones(1, 2, again.get_weights()[0].shape[0])))


def test_state_dict_round_trip_and_dtypes():
    a = sepconv.Bidirectional(sepconv.LSTM(3, return_sequences=True), input_shape=(None, 2))
    b = sepconv.Bidirectional(sepconv.LSTM(3, return_sequences=True))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 2)
    torch.testing.assert_close(a(x), b(x))
    assert a.double()(x.double()).dtype == torch.float64
    mixed = sepconv.GRU(3, dtype="mixed_bfloat16", input_shape=(None, 2))
    assert mixed(x).dtype == torch.bfloat16 and mixed.kernel.dtype == torch.float32


def test_freezing_bidirectional_freezes_both_layers():
    bi = sepconv.Bidirectional(sepconv.GRU(3), backward_layer=sepconv.GRU(3, go_backwards=True),
                               input_shape=(None, 2))
    bi.trainable = False
    assert not bi.forward_layer.trainable and not bi.backward_layer.trainable
    assert not any(p.requires_grad for p in bi.parameters())
    bi.trainable = True
    assert all(p.requires_grad for p in bi.parameters())
    frozen = sepconv.Bidirectional(sepconv.LSTM(2), trainable=False, input_shape=(None, 2))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_stateful_and_initial_state_without_keras():
    layer = sepconv.GRU(3, stateful=True, input_shape=(None, 2), batch_size=2)
    x = torch.randn(2, 6, 2)
    whole = sepconv.GRU(3, input_shape=(None, 2))
    whole.set_weights(layer.get_weights())
    first, second = layer(x[:, :3]), layer(x[:, 3:])
    torch.testing.assert_close(second, whole(x))
    torch.testing.assert_close(second, whole(x[:, 3:], initial_state=first))
    layer.reset_states()
    torch.testing.assert_close(layer(x), whole(x))


def test_unroll_gives_the_same_numbers():
    a = sepconv.LSTM(3, input_shape=(None, 2))
    b = sepconv.LSTM(3, unroll=True, input_shape=(None, 2))
    b.set_weights(a.get_weights())
    x = torch.randn(2, 4, 2)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


# -- a CNN-LSTM model file from tf-keras and Keras 3 ----------------------------------------

def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _cnn_lstm(K, keras3, steps=24):
    """(``steps``: tests/test_export_models.py takes 8, its static export and
    torch.compile unroll every recurrence over them.)"""
    L = K.layers
    return K.Sequential([
        K.Input((steps, 3)),
        L.Conv1D(6, 3, padding="same" if keras3 else "causal", activation="relu",
                 name="conv"),
        L.SeparableConv1D(8, 3, padding="same", name="sep"),
        L.Bidirectional(L.LSTM(5, return_sequences=True), name="bilstm"),
        L.SimpleRNN(4, return_sequences=True, go_backwards=True, name="rnn"),
        L.Bidirectional(L.GRU(4), merge_mode="ave", name="bigru"),
        L.Dense(3, activation="softmax", name="probs"),
    ], name="cnn_lstm")


@pytest.mark.slow
def test_cnn_lstm_model_files_load_without_keras_and_save_back(tmp_path):
    pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    keras = pytest.importorskip("keras")
    from keras_files import Cases, check, outputs
    cases, made = Cases(tmp_path), {}
    for writer, ext in (("tf_keras", ".h5"), ("keras3", ".keras")):
        K = tf_keras if writer == "tf_keras" else keras
        K.utils.set_random_seed(3)
        model = _cnn_lstm(K, writer == "keras3")
        rng = np.random.default_rng(4)
        for layer in model.layers:
            layer.set_weights([(rng.standard_normal(w.shape) * 0.4).astype(w.dtype)
                               for w in layer.get_weights()])
        x = [rng.standard_normal((2, 24, 3)).astype(np.float32)]
        y = outputs(model.predict(x[0], verbose=0))
        path = os.path.join(tmp_path, f"cnn_lstm-{writer}{ext}")
        model.save(path)
        cases.add(f"{writer}{ext}", "model", path, x, y)
        made[writer] = (path, x, y)
    results = cases.run(timeout=300)
    for name in results:
        check(results[name])
    # sepconv writes them back: each Keras reads sepconv's file and predicts the same
    for writer, (path, x, y) in made.items():
        ours = sepconv.load_keras_model(path)
        assert [n for n, _ in ours.named_children()][-4:] == ["bilstm", "rnn", "bigru", "probs"]
        for ext, K in ((".h5", tf_keras), (".keras", keras)):
            if writer == "keras3" and ext == ".h5":
                continue
            again = os.path.join(tmp_path, f"again-{writer}{ext}")
            sepconv.save_keras_model(ours, again)
            if ext == ".h5":  # the weights' names too are tf-keras'
                import h5py
                with h5py.File(path) as f, h5py.File(again) as g:
                    for name in ("bilstm", "rnn", "bigru"):
                        want, got = (f["model_weights"][name].attrs["weight_names"],
                                     g["model_weights"][name].attrs["weight_names"])
                        assert [_text(w) for w in want] == [_text(w) for w in got]
            got = outputs(K.models.load_model(again).predict(x[0], verbose=0))
            np.testing.assert_allclose(got[0], y[0], atol=1e-5)


def test_functional_validates_shapes():
    x = torch.randn(2, 3, 4)
    k, rk = torch.randn(4, 8), torch.randn(2, 8)
    with pytest.raises(ValueError, match="recurrent_kernel"):
        F.lstm(x, k, torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(batch, time, 4\)"):
        F.lstm(torch.randn(2, 3, 5), k, rk)
    with pytest.raises(ValueError, match="initial_state"):
        F.lstm(x, k, rk, initial_state=[torch.zeros(2, 2)])
    with pytest.raises(ValueError, match="initial_state"):
        F.gru(x, torch.randn(4, 6), torch.randn(2, 6), initial_state=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="bias"):
        F.gru(x, torch.randn(4, 6), torch.randn(2, 6), torch.randn(6), reset_after=True)
    with pytest.raises(ValueError, match="dropout_mask"):
        F.simple_rnn(x, torch.randn(4, 2), torch.randn(2, 2),
                     dropout_mask=torch.ones(2, 2, 4))
    with pytest.raises(ValueError, match="no time steps"):
        F.simple_rnn(torch.randn(2, 0, 4), torch.randn(4, 2), torch.randn(2, 2))


def _loop_tanh(t):  # not the registry's tanh: the functional's Python step loop runs
    return torch.tanh(t)


def _loop_sigmoid(t):
    return torch.sigmoid(t)


def _recurrence_case(kind, dtype, seed, batch, steps, features, units, use_bias, initial):
    """Inputs, weights (Keras' layouts) and initial states of a drawn recurrence."""
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, features, generator=g, dtype=dtype)
    k = torch.randn(features, gates * units, generator=g, dtype=dtype) * 0.5
    rk = torch.randn(units, gates * units, generator=g, dtype=dtype) * 0.5
    b = None
    if use_bias:
        b = torch.randn((2, 3 * units) if kind == "gru" else (gates * units,), generator=g,
                        dtype=dtype)
    init = [torch.randn(batch, units, generator=g, dtype=dtype)
            for _ in range(2 if kind == "lstm" else 1)] if initial else None
    return x, k, rk, b, init


def _assert_fused_matches_loop(kind, case, tol, relu=False, **kw):
    """The functional's fused path (the registry's activations) against its Python step
    loop (other activation objects, the same math): outputs, states, every gradient."""
    x, k, rk, b, init = case
    fn = getattr(F, kind)

    def run(loop):
        leaves = [t.clone().requires_grad_() for t in [x, k, rk] + ([] if b is None else [b])]
        state = None if init is None else [s.clone().requires_grad_() for s in init]
        args = dict(kw, initial_state=state)
        if relu:
            args["activation"] = (lambda t: torch.relu(t)) if loop else sepconv.activations.relu
        elif loop:
            args["activation"] = _loop_tanh
            if kind != "simple_rnn":
                args["recurrent_activation"] = _loop_sigmoid
        outs = fn(*leaves[:3], leaves[3] if b is not None else None, **args)
        weight = torch.Generator().manual_seed(9)
        loss = sum((o * torch.randn(o.shape, generator=weight, dtype=x.dtype)).sum()
                   for o in outs)
        return [o.detach() for o in outs] + list(torch.autograd.grad(loss, leaves + (state or [])))

    fused, loop = run(False), run(True)
    assert len(fused) == len(loop)
    for a, e in zip(fused, loop):
        assert a.shape == e.shape
        err = ((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()
        assert err <= tol, err


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn", "simple_rnn_relu"])
@pytest.mark.parametrize("go_backwards,return_sequences,use_bias,initial",
                         [(False, True, True, False), (True, True, False, True),
                          (True, False, True, True), (False, False, False, False)])
def test_fused_recurrence_matches_the_step_loop(kind, dtype, tol, go_backwards,
                                                return_sequences, use_bias, initial):
    """With the default activations and no masks the functional runs torch's fused
    recurrence (torch.lstm / gru / rnn_tanh; SimpleRNN with relu: rnn_relu); forced onto
    the Python step loop (other activation objects, the same math) it must give the same
    outputs, states and every gradient."""
    relu = kind == "simple_rnn_relu"
    kind = "simple_rnn" if relu else kind
    case = _recurrence_case(kind, dtype, 3, 3, 7, 5, 4, use_bias, initial)
    _assert_fused_matches_loop(kind, case, tol, relu, go_backwards=go_backwards,
                               return_sequences=return_sequences)


def test_fused_recurrence_is_the_path_taken(monkeypatch):
    """The defaults run torch's fused op; masks, dropout masks and other activations the
    loop (hard_sigmoid, tf-keras 1's default, included)."""
    calls = []
    real = torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 6, 3)
    k, rk, b = torch.randn(3, 8), torch.randn(2, 8), torch.randn(8)
    F.lstm(x, k, rk, b)
    assert calls == [1]
    F.lstm(x, k, rk, b, mask=torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))
    assert calls == [1, 1]  # right padding: fused too
    F.lstm(x, k, rk, b, mask=torch.tensor([[1, 1, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))  # a hole
    F.lstm(x, k, rk, b, mask=torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))  # left
    F.lstm(x, k, rk, b, mask=torch.tensor([[0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]))  # empty
    F.lstm(x, k, rk, b, recurrent_activation=sepconv.activations.hard_sigmoid)
    F.lstm(x, k, rk, b, dropout_mask=torch.ones(4, 2, 3))
    F.lstm(x.to(torch.bfloat16), k.to(torch.bfloat16), rk.to(torch.bfloat16),
           b.to(torch.bfloat16))
    assert calls == [1, 1]
    layer = sepconv.LSTM(2, return_sequences=True)
    layer(x)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences,zero_output,lengths", [
    (True, False, (7, 3, 1, 5)), (True, True, (7, 3, 1, 5)), (False, False, (7, 3, 1, 5)),
    (True, False, (7, 7, 7, 7))])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 3e-6)])
def test_fused_recurrence_with_right_padding_matches_the_step_loop(
        kind, go_backwards, return_sequences, zero_output, lengths, dtype, tol):
    """Right-padded timestep masks (a padded batch: lengths 7, 3, 1, 5) run fused (LSTM:
    padded steps with saturated gates; GRU / SimpleRNN: a packed sequence); Keras'
    masked-step semantics (states kept, the previous output repeated or zeros, zeros
    before the first step) must equal the step loop's, gradients included, in float64
    (ATen) and float32 (oneDNN's LSTM kernel)."""
    case = _recurrence_case(kind, dtype, 5, 4, 7, 3, 5, True, True)
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]
    _assert_fused_matches_loop(kind, case, tol, go_backwards=go_backwards,
                               return_sequences=return_sequences, mask=mask,
                               zero_output_for_mask=zero_output)


def test_simple_rnn_relu_runs_torchs_relu_recurrence(monkeypatch):
    calls = []
    real = torch.rnn_relu
    monkeypatch.setattr(torch, "rnn_relu", lambda *a: calls.append(1) or real(*a))
    x, k, rk = torch.randn(2, 4, 3), torch.randn(3, 5), torch.randn(5, 5)
    out, h = F.simple_rnn(x, k, rk, activation=sepconv.activations.relu)
    assert calls == [1] and bool((out >= 0).all())
    layer = sepconv.SimpleRNN(5, activation="relu")
    layer(x)
    assert calls == [1, 1]


def test_masked_lstm_ignores_non_finite_padding():
    """Padded steps may hold anything (NaN, inf): as in tf-keras' masked loop, nothing of
    them reaches the outputs, the states or the gradients."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4, 2])[:, None]
    k, rk, b = (torch.randn(4, 12, generator=g, dtype=torch.float64),
                torch.randn(3, 12, generator=g, dtype=torch.float64),
                torch.randn(12, generator=g, dtype=torch.float64))
    dirty = x.clone()
    dirty[1, 4:] = float("nan")
    dirty[2, 2:] = float("inf")
    for go_backwards in (False, True):
        clean = F.lstm(x, k, rk, b, mask=mask, return_sequences=True,
                       go_backwards=go_backwards)
        leaf = dirty.clone().requires_grad_()
        got = F.lstm(leaf, k, rk, b, mask=mask, return_sequences=True,
                     go_backwards=go_backwards)
        for a, e in zip(got, clean):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
        sum(o.sum() for o in got).backward()
        assert bool(torch.isfinite(leaf.grad).all())
        assert bool((leaf.grad[~mask] == 0).all())


@pytest.mark.parametrize("cls", [sepconv.LSTM, sepconv.GRU])
def test_time_major_is_the_transposed_batch_major_layer(cls):
    """``time_major=True``: (time, batch, features) in, (time, batch, units) sequences out,
    masks (time, batch); the numbers of the batch-major layer (tf-keras parity:
    tests/test_fuzz_tfkeras.py)."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 4)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    plain = cls(5, return_sequences=True, return_state=True)
    major = cls(5, return_sequences=True, return_state=True, time_major=True)
    plain(x)
    major(x.transpose(0, 1))
    major.set_weights(plain.get_weights())
    want = plain(x, mask=mask)
    got = major(x.transpose(0, 1), mask=mask.T)
    torch.testing.assert_close(got[0], want[0].transpose(0, 1))
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b)
    assert major.compute_output_shape((7, None, 4))[0] == (7, None, 5)
    with pytest.raises(ValueError, match="time, batch"):
        major(x.transpose(0, 1), mask=mask)


def test_simple_rnn_time_major_from_a_config():
    """tf-keras' SimpleRNN takes time_major through **kwargs: not an argument of sepconv's
    (its signature is tf-keras'), but a file's config that sets it is honoured."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 4)
    plain = sepconv.SimpleRNN(5, return_sequences=True)
    plain(x)
    config = dict(plain.get_config(), time_major=True)
    major = sepconv.SimpleRNN.from_config(config)
    assert major.time_major and major.get_config()["time_major"] is True
    major(x.transpose(0, 1))
    major.set_weights(plain.get_weights())
    torch.testing.assert_close(major(x.transpose(0, 1)), plain(x).transpose(0, 1))
    with pytest.raises(TypeError):
        sepconv.SimpleRNN(5, time_major=True)
