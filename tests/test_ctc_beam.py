"""Beam-search CTC decoding (``functional.ctc_beam_decode``) against both Kerases:
tf-keras 2.21's ``backend.ctc_decode(greedy=False)`` (TensorFlow's beam search decoder on
``log(y + 1e-7)``, blank the last class, repeated labels of a path merged) and Keras 3.15's
``ops.ctc_decode(strategy="beam_search")`` (a log-softmax first, blank ``mask_index``),
on drawn softmax outputs, lengths, beam widths and path counts: the decoded paths equal,
the log probabilities within 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from sepconv.functional import ctc_beam_decode  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _draw(seed, batch, steps, classes, scale):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, steps, classes)).astype(np.float32) * scale
    y = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    lengths = rng.integers(1, steps + 1, batch).astype(np.int32)
    lengths[0] = steps
    return y, lengths


def _tf_keras(y, lengths, beam, top):
    decoded, log_prob = tf_keras.backend.ctc_decode(y, lengths, greedy=False,
                                                    beam_width=beam, top_paths=top)
    return np.stack([d.numpy() for d in decoded]), log_prob.numpy()


def _keras3(y, lengths, beam, top, mask_index):
    paths, scores = keras.ops.ctc_decode(y, lengths, strategy="beam_search",
                                         beam_width=beam, top_paths=top,
                                         mask_index=mask_index)
    return keras.ops.convert_to_numpy(paths), keras.ops.convert_to_numpy(scores)


def _same_paths(got: torch.Tensor, want: np.ndarray) -> None:
    got = got.numpy()
    assert got.shape[:2] == want.shape[:2]
    np.testing.assert_array_equal(got[:, :, :want.shape[2]], want)  # tf-keras: cut to
    assert (got[:, :, want.shape[2]:] == -1).all()                  # the longest path


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 16), batch=st.integers(1, 3), steps=st.integers(1, 12),
       classes=st.integers(2, 6), beam=st.integers(1, 8), top=st.integers(1, 8),
       scale=st.sampled_from([0.5, 1.0, 3.0]), mask_index=st.sampled_from([0, None, 1]))
def test_beam_decode_is_both_kerases(seed, batch, steps, classes, beam, top, scale,
                                     mask_index):
    top = min(top, beam)
    mask_index = None if mask_index is not None and mask_index >= classes else mask_index
    y, lengths = _draw(seed, batch, steps, classes, scale)
    x, n = torch.from_numpy(y), torch.from_numpy(lengths)
    try:
        want, want_lp = _tf_keras(y, lengths, beam, top)
    except tf.errors.InvalidArgumentError as err:  # fewer paths than asked for
        assert "Less leaves in the beam search than requested" in str(err)
        with pytest.raises(ValueError, match="top_paths"):
            ctc_beam_decode(torch.log(x + 1e-7), n, beam, top)
    else:
        got, lp = ctc_beam_decode(torch.log(x + 1e-7), n, beam, top)
        _same_paths(got, want)
        np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)
    want, want_lp = _keras3(y, lengths, beam, top, mask_index)
    if np.isinf(want_lp).any():  # fewer distinct paths than asked for: Keras pads
        return
    got, lp = ctc_beam_decode(x, n, beam, top, mask_index=mask_index, like="keras3")
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)


def test_tf_keras_merges_a_label_repeated_across_a_blank_and_keras3_does_not():
    """``a, blank, a`` is the path ``[a, a]``; TensorFlow's v1 decoder (tf-keras) merges
    equal consecutive labels of the result to ``[a]``, Keras 3 keeps both; so does
    sepconv for each, and ``merge_repeated=False`` keeps both for tf-keras' flavour."""
    y = np.full((1, 3, 3), 0.01, np.float32)
    y[0, 0, 1] = y[0, 2, 1] = 0.98  # class 1, blank, class 1 (tf-keras' blank: 2)
    y[0, 1, 2] = 0.98
    lengths = np.array([3], np.int32)
    want, want_lp = _tf_keras(y, lengths, 4, 1)
    got, lp = ctc_beam_decode(torch.log(torch.from_numpy(y) + 1e-7),
                              torch.from_numpy(lengths), 4, 1)
    _same_paths(got, want)
    assert want.tolist() == [[[1, -1, -1]]]
    np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)
    both, _ = ctc_beam_decode(torch.log(torch.from_numpy(y) + 1e-7),
                              torch.from_numpy(lengths), 4, 1, merge_repeated=False)
    assert both[0, 0, :2].tolist() == [1, 1]
    y3 = np.log(y[:, :, [2, 0, 1]])  # Keras 3's blank 0; logits (it takes a softmax)
    want, want_lp = _keras3(y3, lengths, 4, 1, 0)
    assert want[0, 0, :2].tolist() == [2, 2]
    got, lp = ctc_beam_decode(torch.from_numpy(y3), torch.from_numpy(lengths), 4, 1,
                              mask_index=0, like="keras3")
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)


def test_beam_search_finds_what_greedy_misses():
    """The classic case where the best path is not the most probable labelling: beam
    search (both Kerases) decodes ``[0]``, greedy decoding the empty labelling."""
    from sepconv.functional import ctc_greedy_decode
    y = np.array([[[0.4, 0.6], [0.4, 0.6]]], np.float32)  # blank (last) 0.6 each step
    lengths = np.array([2], np.int32)
    x = torch.log(torch.from_numpy(y) + 1e-7)
    greedy, _ = ctc_greedy_decode(x, torch.from_numpy(lengths))
    assert (greedy.numpy() == -1).all()
    got, lp = ctc_beam_decode(x, torch.from_numpy(lengths), beam_width=2)
    want, want_lp = _tf_keras(y, lengths, 2, 1)
    _same_paths(got, want)
    assert got[0, 0, 0] == 0 and np.isclose(lp.item(), np.log(0.64), atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"beam_width": 0}, "beam_width=0"), ({"top_paths": 3, "beam_width": 2}, "top_paths=3"),
    ({"mask_index": 5}, "mask_index=5"), ({"like": "jax"}, "like='jax'"),
    ({"top_paths": 1.5}, "top_paths=1.5")])
def test_arguments_are_checked_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ctc_beam_decode(torch.zeros(1, 3, 4), torch.tensor([3]), **kwargs)
    with pytest.raises(ValueError, match="sequence_lengths"):
        ctc_beam_decode(torch.zeros(1, 3, 4), torch.tensor([4]))
    with pytest.raises(ValueError, match="inputs"):
        ctc_beam_decode(torch.zeros(3, 4), torch.tensor([3]))


# --- exactness: each flavour to the bit against its Keras, ties, empty rows, float64 -------

def _logits(seed, batch, steps, classes, scale, ties, dtype):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, steps, classes)) * scale
    if ties:  # whole numbers: many equal scores (equal classes, equal paths)
        logits = np.round(logits)
    lengths = rng.integers(0, steps + 1, batch).astype(np.int32)
    lengths[0] = steps
    return logits.astype(dtype), lengths


def _tf_op(x, lengths, beam, top, merge_repeated):
    """TensorFlow's decoder itself on log scores ``x`` (what tf-keras' ctc_decode runs)."""
    decoded, log_prob = tf.compat.v1.nn.ctc_beam_search_decoder(
        tf.transpose(tf.constant(x), [1, 0, 2]), lengths, beam_width=beam, top_paths=top,
        merge_repeated=merge_repeated)
    return [tf.sparse.to_dense(d, default_value=-1).numpy() for d in decoded], \
        log_prob.numpy()


def _check_tf(x, lengths, beam, top, merge_repeated=True):
    try:
        want, want_lp = _tf_op(x, lengths, beam, top, merge_repeated)
    except tf.errors.InvalidArgumentError as err:
        assert "Less leaves in the beam search than requested" in str(err)
        with pytest.raises(ValueError, match="top_paths"):
            ctc_beam_decode(torch.from_numpy(x), torch.from_numpy(lengths), beam, top,
                            merge_repeated=merge_repeated)
        return None
    got, lp = ctc_beam_decode(torch.from_numpy(x), torch.from_numpy(lengths), beam, top,
                              merge_repeated=merge_repeated)
    assert lp.dtype == torch.from_numpy(x).dtype
    np.testing.assert_array_equal(lp.numpy(), want_lp)  # to the bit
    for i, w in enumerate(want):
        np.testing.assert_array_equal(got[i, :, :w.shape[1]].numpy(), w)
        assert (got[i, :, w.shape[1]:] == -1).all()
    return got


def _check_keras3(x, lengths, beam, top, mask_index):
    want, want_lp = _keras3(x, lengths, beam, top, mask_index)
    got, lp = ctc_beam_decode(torch.from_numpy(x), torch.from_numpy(lengths), beam, top,
                              mask_index=mask_index, like="keras3")
    np.testing.assert_array_equal(got.numpy(), want)  # -inf padding paths included
    np.testing.assert_array_equal(lp.numpy(), want_lp)  # to the bit, float32 as Keras
    return got, lp


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 16), batch=st.integers(1, 4), steps=st.integers(1, 40),
       classes=st.sampled_from([2, 3, 5, 29, 120]), beam=st.integers(1, 40),
       top=st.integers(1, 4), scale=st.sampled_from([0.5, 2.0, 5.0]), ties=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), merge=st.booleans())
def test_tf_keras_flavour_is_tensorflows_decoder_to_the_bit(seed, batch, steps, classes,
                                                            beam, top, scale, ties, dtype,
                                                            merge):
    """Decoded paths and log probabilities equal TensorFlow's to the bit (float32 and
    float64), equal scores in TensorFlow's order, rows of length 0, too few leaves."""
    x, lengths = _logits(seed, batch, steps, classes, scale, ties, dtype)
    x = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)  # log-softmax
    _check_tf(x, lengths, beam, min(top, beam), merge)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 16), batch=st.integers(1, 3), steps=st.integers(1, 20),
       classes=st.sampled_from([2, 3, 5, 29, 60]), beam=st.integers(1, 16),
       top=st.integers(1, 4), scale=st.sampled_from([0.5, 2.0, 5.0]), ties=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), mask=st.sampled_from([0, 1, -1]))
def test_keras3_flavour_is_keras3_to_the_bit(seed, batch, steps, classes, beam, top, scale,
                                             ties, dtype, mask):
    """Paths and log probabilities equal Keras 3's to the bit: equal scores in Keras'
    order (its hash order), rows of length 0, ``-inf`` padding paths, float64 inputs."""
    x, lengths = _logits(seed, batch, steps, classes, scale, ties, dtype)
    _check_keras3(x, lengths, beam, min(top, beam), mask % classes)


def test_equal_scores_everywhere_order_as_each_keras():
    """Every class equally likely at every step: all paths of a length tie; each flavour
    returns the tied paths in its Keras' order (TensorFlow's TopN and libstdc++'s sort,
    Keras 3's hashes), not in an order of our own."""
    x = np.zeros((2, 6, 5), np.float32)
    lengths = np.array([6, 3], np.int32)
    got = _check_tf(x - np.log(5.0, dtype=np.float32), lengths, 8, 4)
    assert len({tuple(p) for p in got[:, 0].tolist()}) == 4
    got, lp = _check_keras3(x, lengths, 8, 4, 0)
    assert lp[0, 0] == lp[0, 1]


def test_more_paths_asked_than_found():
    """Two classes, one step: Keras 3 pads with empty paths of log probability -inf (and
    so does sepconv); TensorFlow refuses ("Less leaves"), and so does sepconv."""
    x = np.log(np.array([[[0.3, 0.7]]], np.float32))
    got, lp = _check_keras3(x, np.array([1], np.int32), 8, 4, 0)
    assert np.isneginf(lp[0, 2:].numpy()).all() and (got[2:] == -1).all()
    assert _check_tf(x, np.array([1], np.int32), 8, 4) is None
    assert _check_tf(x, np.array([0], np.int32), 8, 2) is None  # a row of length 0


@pytest.mark.slow
def test_large_beams_and_vocabularies_against_both_kerases():
    """Word-piece vocabularies and wide beams, both Kerases' public calls too."""
    x, lengths = _logits(7, 2, 100, 1000, 2.0, False, np.float32)
    x = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
    _check_tf(x, lengths, 16, 3)
    x, lengths = _logits(8, 3, 120, 29, 2.0, False, np.float32)
    x = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
    _check_tf(x, lengths, 100, 3)
    y = np.exp(x)
    want, want_lp = _tf_keras(y, lengths, 100, 3)
    got, lp = ctc_beam_decode(torch.log(torch.from_numpy(y) + 1e-7),
                              torch.from_numpy(lengths), 100, 3)
    _same_paths(got, want)
    np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)
    x, lengths = _logits(9, 2, 40, 200, 2.0, False, np.float32)
    _check_keras3(x, lengths, 32, 3, 0)
    x, lengths = _logits(10, 2, 60, 29, 3.0, True, np.float32)
    _check_keras3(x, lengths, 100, 3, 0)


def test_python_fallback_without_a_compiler(monkeypatch):
    """Where the C++ routine cannot be built, the Python port gives TensorFlow's paths
    and log probabilities (to 1e-5: NumPy's exp/log1p) on scores without ties."""
    from sepconv.kernels import _ctc_native
    monkeypatch.setattr(_ctc_native, "load", lambda: None)
    for seed in range(4):
        x, lengths = _logits(seed, 2, 15, 6, 2.0, False, np.float32)
        x = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
        want, want_lp = _tf_op(x, lengths, 6, 2, True)
        got, lp = ctc_beam_decode(torch.from_numpy(x), torch.from_numpy(lengths), 6, 2)
        np.testing.assert_allclose(lp.numpy(), want_lp, rtol=1e-5, atol=1e-5)
        for i, w in enumerate(want):
            np.testing.assert_array_equal(got[i, :, :w.shape[1]].numpy(), w)


@pytest.mark.slow
def test_keras3_structured_search_is_keras_ops_port_at_word_piece_sizes():
    """At sizes where Keras 3 itself takes minutes (it copies every candidate path at
    every step), the structured search (``_ctc_beam.keras3_fast``, what ctc_beam_decode
    runs) equals the direct port of Keras' tensor operations (``keras3_batch``, checked
    against Keras above) to the bit, with ties and rows of length 0."""
    from sepconv import _ctc_beam
    for seed, (batch, steps, classes, beam, ties) in enumerate(
            [(2, 40, 1000, 100, False), (4, 80, 29, 100, True), (2, 50, 300, 40, True)]):
        x, lengths = _logits(seed, batch, steps, classes, 2.0, ties, np.float32)
        x = torch.log_softmax(torch.from_numpy(x), dim=-1)
        n = lengths.tolist()
        got = _ctc_beam.keras3_fast(x, n, beam, 3, 0)
        want = _ctc_beam.keras3_batch(x, n, beam, 3, 0)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
