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
