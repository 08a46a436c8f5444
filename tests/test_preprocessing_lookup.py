"""Keras' lookup / text / binning preprocessing layers (StringLookup, IntegerLookup,
TextVectorization, Discretization, CategoryEncoding, Hashing) against tf-keras 2.21 and
Keras 3.15: outputs on the same inputs (hypothesis-drawn arguments and token streams with
unicode and punctuation), adapt()'s vocabulary / bins, configs, errors, and model files
(a text classifier, a tabular model) loaded in the TF-free child."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402
from sepconv.layers.preprocessing import fingerprint64, siphash64  # noqa: E402
from tf_keras_compare import check_signature  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")
# (no shrinking: each tf-keras adapt retraces, a shrink would take minutes)
HYP = settings(max_examples=15, deadline=None, derandomize=True,
               phases=[Phase.explicit, Phase.generate])
NAMES = ["StringLookup", "IntegerLookup", "TextVectorization", "Discretization",
         "CategoryEncoding", "Hashing"]

# words with ASCII / Latin-1 / CJK / emoji letters, TF's punctuation and odd whitespace
WORDS = ["the", "The", "THE", "cat", "Cat!", "dog,", "a", "A", "héllo", "Wörld", "ÉÉ", "日本",
         "😀", "x-y", "it's", "[UNK]", "...", "q", "z.z", "naïve", "Ωmega"]
SEPS = [" ", "  ", "\t", "\n", " \u00a0", " \u3000 ", ", "]


def _np(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _same(ours, theirs, tol=1e-6):
    a, b = _np(ours), _np(theirs)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(a, b)


def _k3(t):
    return np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)


@pytest.mark.parametrize("name", NAMES)
def test_signature_and_r_function(name):
    r = getattr(sepconv, "layer_" + {"StringLookup": "string_lookup",
                                      "IntegerLookup": "integer_lookup",
                                      "TextVectorization": "text_vectorization",
                                      "Discretization": "discretization",
                                      "CategoryEncoding": "category_encoding",
                                      "Hashing": "hashing"}[name])
    check_signature(getattr(sepconv, name), getattr(tf_keras.layers, name), r,
                    required=1 if name == "Hashing" else 0)


# -- StringLookup / IntegerLookup --------------------------------------------------------------

@st.composite
def lookup_case(draw, strings=True):
    pool = WORDS if strings else list(range(-3, 40))
    vocab = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    mask = draw(st.sampled_from([None, "", "[MASK]"] if strings else [None, 0]))
    oov = "[UNK]" if strings else -1
    vocab = [v for v in vocab if v != mask and v != oov] or (["zz"] if strings else [99])
    kwargs = dict(num_oov_indices=draw(st.integers(0, 3)), mask_token=mask,
                  output_mode=draw(st.sampled_from(["int", "one_hot", "multi_hot", "count",
                                                    "tf_idf"])),
                  vocabulary=vocab)
    if kwargs["output_mode"] == "tf_idf":
        kwargs["idf_weights"] = draw(st.lists(st.floats(0.1, 3.0), min_size=len(vocab),
                                              max_size=len(vocab)))
    if kwargs["output_mode"] != "int" and draw(st.booleans()):
        kwargs.update(pad_to_max_tokens=True, max_tokens=len(vocab) + 6)
    stream = pool + ([mask] if mask is not None else [])
    if kwargs["num_oov_indices"] == 0:
        stream = vocab + ([mask] if mask is not None else [])
    shape = (3, 1) if kwargs["output_mode"] == "one_hot" else (3, 4)
    tokens = draw(st.lists(st.sampled_from(stream), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))
    return kwargs, np.asarray(tokens, dtype=object if strings else np.int64).reshape(shape)


@HYP
@given(lookup_case(strings=True))
def test_string_lookup_matches_tf_keras(case):
    kwargs, tokens = case
    ref = tf_keras.layers.StringLookup(**kwargs)
    ours = sepconv.StringLookup(**kwargs)
    assert ours.get_vocabulary() == ref.get_vocabulary()
    x = tokens.astype(str)
    _same(ours(x), ref(tf.constant(x)))
    if kwargs["output_mode"] == "int":
        back_ref = tf_keras.layers.StringLookup(**kwargs, invert=True)
        back = sepconv.StringLookup(**kwargs, invert=True)
        ids = _np(ours(x))
        want = [b.decode() for b in back_ref(ids).numpy().reshape(-1)]
        np.testing.assert_array_equal(back(ids).reshape(-1), np.asarray(want, dtype=str))


@HYP
@given(lookup_case(strings=False))
def test_integer_lookup_matches_tf_keras(case):
    kwargs, tokens = case
    ref = tf_keras.layers.IntegerLookup(**kwargs)
    ours = sepconv.IntegerLookup(**kwargs)
    assert ours.get_vocabulary() == [int(v) for v in ref.get_vocabulary()]
    _same(ours(torch.from_numpy(tokens)), ref(tokens))
    if kwargs["output_mode"] == "int":
        back_ref = tf_keras.layers.IntegerLookup(**kwargs, invert=True)
        back = sepconv.IntegerLookup(**kwargs, invert=True)
        ids = _np(ours(tokens))
        _same(back(ids), back_ref(ids))


@HYP
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=60),
       st.sampled_from([None, 4, 8]), st.sampled_from([None, ""]),
       st.integers(1, 2), st.booleans())
def test_string_lookup_adapt_matches_tf_keras_and_keras3(tokens, max_tokens, mask, oov,
                                                         tf_idf):
    data = np.asarray(tokens + ["q"])  # (tf-keras fails on an empty learned vocabulary)
    kwargs = dict(max_tokens=max_tokens, mask_token=mask, num_oov_indices=oov,
                  output_mode="tf_idf" if tf_idf else "int")
    ref = tf_keras.layers.StringLookup(**kwargs)
    ref.adapt(data)
    ours = sepconv.StringLookup(**kwargs)
    assert sepconv.adapt(ours, data) is ours
    assert ours.get_vocabulary() == ref.get_vocabulary()
    _same(ours(data[:5]), ref(data[:5]))
    k3 = keras.layers.StringLookup(**kwargs)
    k3.adapt(data)
    assert [str(v) for v in k3.get_vocabulary()] == ours.get_vocabulary()
    if tf_idf:
        _same(ours.get_weights()[0], ref.get_weights()[0])


@HYP
@given(st.lists(st.integers(-2, 30), min_size=1, max_size=60), st.sampled_from([None, 5]),
       st.sampled_from([None, 0]))
def test_integer_lookup_adapt_matches_tf_keras(values, max_tokens, mask):
    data = np.asarray(values + [17], dtype=np.int64)
    ref = tf_keras.layers.IntegerLookup(max_tokens=max_tokens, mask_token=mask)
    ref.adapt(data)
    ours = sepconv.IntegerLookup(max_tokens=max_tokens, mask_token=mask).adapt(data)
    assert ours.get_vocabulary() == [int(v) for v in ref.get_vocabulary()]
    _same(ours(torch.from_numpy(data)), ref(data))


def test_oov_buckets_hash_strings_with_fingerprint64():
    """num_oov_indices > 1: strings go to Fingerprint64 % n (tf.strings.to_hash_bucket_fast),
    integers to floormod (Keras 3's oov_method="farmhash" hashes their text)."""
    rng = np.random.default_rng(3)
    blobs = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(0, 260, 3)]
    theirs = tf.strings.to_hash_bucket_fast(blobs, 2 ** 62).numpy()
    assert [fingerprint64(b) % 2 ** 62 for b in blobs] == theirs.tolist()
    x = np.asarray(["a", "zz", "日本", "never seen", "x" * 70])
    ref = tf_keras.layers.StringLookup(vocabulary=["a"], num_oov_indices=5, mask_token="")
    _same(sepconv.StringLookup(vocabulary=["a"], num_oov_indices=5, mask_token="")(x), ref(x))
    k3 = keras.layers.IntegerLookup(vocabulary=[1, 2], num_oov_indices=4, oov_method="farmhash")
    ours = sepconv.IntegerLookup.from_config({**k3.get_config(), "name": "farm"})
    ids = np.asarray([1, 2, 3, 10, 20, -7, 123456789], dtype=np.int64)
    _same(ours(ids), _k3(k3(ids)))


def test_vocabulary_file_and_special_tokens(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\nb\ncé\n", encoding="utf-8")
    ref = tf_keras.layers.StringLookup(vocabulary=str(path))
    ours = sepconv.StringLookup(vocabulary=str(path))
    assert ours.get_vocabulary() == ref.get_vocabulary()
    x = np.asarray(["b", "cé", "[UNK]", "q"])
    _same(ours(x), ref(x))
    # special tokens leading a list are recognised, as in tf-keras
    kwargs = dict(vocabulary=["", "[UNK]", "p", "q"], mask_token="")
    assert sepconv.StringLookup(**kwargs).get_vocabulary() == \
        tf_keras.layers.StringLookup(**kwargs).get_vocabulary()


def test_lookup_configs_and_errors():
    kwargs = dict(vocabulary=["a", "b"], mask_token="", num_oov_indices=2)
    ref = tf_keras.layers.StringLookup(**kwargs)
    ours = sepconv.StringLookup(**kwargs)
    assert set(ours.get_config()) == set(ref.get_config())
    again = sepconv.StringLookup.from_config(ours.get_config())
    assert again.get_vocabulary() == ours.get_vocabulary()
    ref_i = tf_keras.layers.IntegerLookup(vocabulary=[4, 5])
    assert set(sepconv.IntegerLookup(vocabulary=[4, 5]).get_config()) == set(ref_i.get_config())
    with pytest.raises(ValueError, match="max_tokens"):
        sepconv.StringLookup(max_tokens=1)
    with pytest.raises(ValueError, match="num_oov_indices"):
        sepconv.StringLookup(num_oov_indices=-1)
    with pytest.raises(ValueError, match="output_mode"):
        sepconv.StringLookup(output_mode="bogus")
    with pytest.raises(ValueError, match="invert"):
        sepconv.StringLookup(invert=True, output_mode="count")
    with pytest.raises(ValueError, match="repeated"):
        sepconv.StringLookup(vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="idf_weights"):
        sepconv.StringLookup(vocabulary=["a"], output_mode="tf_idf")
    with pytest.raises(ValueError, match="num_oov_indices=0"):
        sepconv.StringLookup(vocabulary=["a"], num_oov_indices=0)(["b"])
    with pytest.raises(ValueError, match="static vocabulary"):
        sepconv.StringLookup(vocabulary=["a"]).adapt(["a"])
    with pytest.raises(TypeError, match="strings"):
        sepconv.StringLookup(vocabulary=["a"])(torch.zeros(2))


# -- TextVectorization -------------------------------------------------------------------------

@st.composite
def texts(draw, n=6):
    rows = []
    for _ in range(n):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=7))
        seps = draw(st.lists(st.sampled_from(SEPS), min_size=len(words), max_size=len(words)))
        rows.append("".join(w + s for w, s in zip(words, seps)))
    return np.asarray(rows)


@HYP
@given(texts(), texts(n=3),
       st.sampled_from(["lower_and_strip_punctuation", "lower", "strip_punctuation", None]),
       st.sampled_from(["whitespace", "character"]), st.sampled_from([None, 2, (1, 3)]),
       st.sampled_from(["int", "multi_hot", "count", "tf_idf"]),
       st.sampled_from([None, 4]), st.sampled_from([None, 12]))
def test_text_vectorization_matches_tf_keras(data, x, standardize, split, ngrams, mode,
                                             length, max_tokens):
    data = np.concatenate([data, ["the cat sat"]])  # (never an empty vocabulary)
    kwargs = dict(standardize=standardize, split=split, ngrams=ngrams, output_mode=mode,
                  max_tokens=max_tokens,
                  output_sequence_length=length if mode == "int" else None)
    ref = tf_keras.layers.TextVectorization(**kwargs)
    ref.adapt(data)
    ours = sepconv.layer_text_vectorization(**kwargs)
    sepconv.adapt(ours, data)
    assert ours.get_vocabulary() == ref.get_vocabulary()
    _same(ours(x), ref(x), tol=1e-5)
    _same(ours(x[:, None]), ref(x[:, None]), tol=1e-5)


@settings(max_examples=8, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate])
@given(texts(), texts(n=3), st.sampled_from([None, 5]), st.sampled_from([None, 2]))
def test_text_vectorization_matches_keras3(data, x, length, ngrams):
    data = np.concatenate([data, ["the cat sat"]])
    ref = keras.layers.TextVectorization(output_sequence_length=length, ngrams=ngrams)
    ref.adapt(data)
    ours = sepconv.TextVectorization(output_sequence_length=length, ngrams=ngrams)
    ours.adapt(data)
    assert ours.get_vocabulary() == [str(v) for v in ref.get_vocabulary()]
    _same(ours(x), _k3(ref(x)))


def test_text_vectorization_no_split_and_config():
    vocab = ["hello world", "b"]
    kwargs = dict(split=None, standardize="lower", vocabulary=vocab, output_sequence_length=1)
    ref = tf_keras.layers.TextVectorization(**kwargs)
    ours = sepconv.TextVectorization(**kwargs)
    x = np.asarray([["Hello World"], ["B"], ["c"]])
    _same(ours(x), ref(x))
    assert set(ours.get_config()) == set(ref.get_config())
    again = sepconv.TextVectorization.from_config(ours.get_config())
    _same(again(x), ours(x))
    with pytest.raises(ValueError, match="standardize"):
        sepconv.TextVectorization(standardize="upper")
    with pytest.raises(ValueError, match="output_sequence_length"):
        sepconv.TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(ValueError, match="input rank"):
        sepconv.TextVectorization(vocabulary=["a"])(np.asarray([["a", "b"]]))


# -- Discretization / CategoryEncoding / Hashing -------------------------------------------------

@HYP
@given(st.integers(1, 200), st.sampled_from([2, 4, 7]), st.sampled_from([0.01, 0.1]),
       st.sampled_from(["int", "one_hot", "multi_hot", "count"]), st.integers(0, 10 ** 6))
def test_discretization_adapt_matches_tf_keras_and_keras3(n, bins, epsilon, mode, seed):
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(n) * 3).astype(np.float32)
    x = rng.standard_normal((5, 1)).astype(np.float32) * 3
    ref = tf_keras.layers.Discretization(num_bins=bins, epsilon=epsilon, output_mode=mode)
    ref.adapt(data)
    ours = sepconv.Discretization(num_bins=bins, epsilon=epsilon, output_mode=mode)
    ours.adapt(data)
    np.testing.assert_allclose(ours.bin_boundaries, ref.bin_boundaries, rtol=1e-6)
    _same(ours(torch.from_numpy(x)), ref(x))
    k3 = keras.layers.Discretization(num_bins=bins, epsilon=epsilon)
    k3.adapt(data)
    three = sepconv.Discretization(num_bins=bins, epsilon=epsilon)
    three.keras_version = 3
    three.adapt(data)
    np.testing.assert_allclose(three.bin_boundaries, k3.bin_boundaries, rtol=1e-6)


def test_discretization_boundaries_are_float32_as_bucketize():
    b = [0.1, 0.5, 2.0]
    ref = tf_keras.layers.Discretization(bin_boundaries=b)
    ours = sepconv.Discretization(bin_boundaries=b)
    x = np.asarray([[0.1, 0.09999, 0.5, 3.0, -1.0, 2.0]], dtype=np.float64)
    _same(ours(torch.from_numpy(x)), ref(x))
    assert set(ours.get_config()) == set(ref.get_config())
    with pytest.raises(ValueError, match="num_bins"):
        sepconv.Discretization(bin_boundaries=b, num_bins=3)


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_category_encoding_matches_tf_keras(mode):
    x = np.asarray([[0, 1, 1, 3], [2, 2, 2, 0]]) if mode != "one_hot" else \
        np.asarray([[0], [3], [2]])
    ref = tf_keras.layers.CategoryEncoding(num_tokens=5, output_mode=mode)
    ours = sepconv.layer_category_encoding(num_tokens=5.0, output_mode=mode)
    _same(ours(torch.from_numpy(x)), ref(x))
    _same(ours(x[0]), ref(x[0]))  # a 1-D input: one sample
    if mode == "count":
        w = np.asarray([[0.5, 1.0, 2.0, 1.0], [1.0, 1.0, 1.0, 3.0]], dtype=np.float32)
        _same(ours(x, count_weights=w), ref(x, count_weights=w))
    assert set(ours.get_config()) == set(ref.get_config())
    with pytest.raises(ValueError, match="num_tokens"):
        ours(np.asarray([[5]]))


@pytest.mark.parametrize("mask", [None, "b"])
def test_hashing_matches_tf_keras(mask):
    x = np.asarray([["a", "b", "日本"], ["😀", "", "x" * 100]])
    ref = tf_keras.layers.Hashing(num_bins=7, mask_value=mask)
    ours = sepconv.Hashing(num_bins=7, mask_value=mask)
    _same(ours(x), ref(x))
    ints = np.asarray([[1, -5, 123456789012, 0]], dtype=np.int64)
    _same(ours(ints), ref(ints)) if mask is None else None
    mh = sepconv.Hashing(num_bins=5, output_mode="multi_hot")
    _same(mh(x), tf_keras.layers.Hashing(num_bins=5, output_mode="multi_hot")(x))
    # salt: TensorFlow's keyed SipHash-2-4 (an int k is the key [k, k])
    for salt in (133, [133, 137]):
        _same(sepconv.Hashing(num_bins=7, salt=salt, mask_value=mask)(x),
              tf_keras.layers.Hashing(num_bins=7, salt=salt, mask_value=mask)(x))
    with pytest.raises(ValueError, match="salt"):
        sepconv.Hashing(num_bins=3, salt="pepper")


def test_siphash_and_keras3_salted_oov_buckets():
    rng = np.random.default_rng(4)
    blobs = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(0, 70, 3)]
    key = [12345678901, 98765]
    theirs = tf.strings.to_hash_bucket_strong(blobs, 2 ** 62, key=key).numpy()
    assert [siphash64(b, *key) % 2 ** 62 for b in blobs] == theirs.tolist()
    x = np.asarray(["a", "zz", "日本", "never seen", "x" * 70])
    k3 = keras.layers.StringLookup(vocabulary=["a"], num_oov_indices=5, salt=[7, 11])
    ours = sepconv.StringLookup.from_config(k3.get_config())
    _same(ours(x), _k3(k3(x)))
    k3 = keras.layers.IntegerLookup(vocabulary=[1], num_oov_indices=4, oov_method="farmhash",
                                    salt=99)
    ours = sepconv.IntegerLookup.from_config(k3.get_config())
    ids = np.asarray([1, 2, 3, -50, 10 ** 12], dtype=np.int64)
    _same(ours(ids), _k3(k3(ids)))
    assert ours.get_config()["salt"] == [99, 99]


# -- model files -----------------------------------------------------------------------------------

CORPUS = np.asarray(["The cat sat on the mat!", "A dog, a DOG; dogs.", "héllo Wörld ÉÉ café",
                     "it's 日本 😀 text", "cats and dogs and mats", "the the the end."])
QUERY = np.asarray(["the cat and the dog", "unknown wörds here!", "", "ÉÉ café 😀"])


def _text_model(K, name, vocabulary=None):
    L = K.layers
    tv = L.TextVectorization(max_tokens=40, output_sequence_length=7, name="tv",
                             vocabulary=vocabulary)
    if vocabulary is None:
        tv.adapt(CORPUS)
    inp = K.Input((1,), dtype="string", name="text")
    y = L.Embedding(40, 6, name="emb")(tv(inp))
    y = L.Conv1D(5, 3, activation="relu", name="conv")(y)
    y = L.GlobalMaxPooling1D(name="pool")(y)
    return K.Model(inp, L.Dense(2, name="out")(y), name=name), tv


TAB_IDS = np.asarray([[3, 5, 9], [5, 5, 7], [9, 2, 3], [11, 3, 5]], dtype=np.int64)
TAB_X = np.asarray([[0.3, -1.0], [2.5, 0.1], [-0.7, 1.9], [0.0, 0.4]], dtype=np.float32)


def _tabular_model(K, name, given=False):
    L = K.layers
    il = L.IntegerLookup(name="ids", vocabulary=[3, 5, 7, 9] if given else None)
    di = L.Discretization(name="bins", **(dict(bin_boundaries=[-0.5, 0.2, 1.0]) if given
                                          else dict(num_bins=4)))
    if not given:
        il.adapt(np.asarray([3, 5, 5, 7, 9, 9, 9, 2]))
        di.adapt(np.random.default_rng(5).standard_normal(300).astype(np.float32))
    a = K.Input((3,), dtype="int64", name="ids_in")
    b = K.Input((2,), dtype="float32", name="x_in")
    y = L.Concatenate(name="cat")([L.CategoryEncoding(6, output_mode="multi_hot", name="ce")(il(a)),
                                   L.CategoryEncoding(4, output_mode="count", name="cc")(di(b))])
    return K.Model([a, b], L.Dense(3, name="out")(y), name=name)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("preprocessing_files"))
    cases = Cases(root)
    # tf-keras: .keras with the adapted vocabulary in assets; .h5 holds a vocabulary only
    # when it is in the config (tf-keras refuses to write an adapted one to HDF5)
    model, _ = _text_model(tf_keras, "tk_text")
    y = outputs(model.predict(QUERY[:, None], verbose=0))
    path = os.path.join(root, "tk_text.keras")
    model.save(path)
    cases.add("tk_text.keras", "model", path, [QUERY[:, None]], y)
    vocab = ["the", "cat", "dog", "wörld", "ÉÉ", "😀"]
    model, _ = _text_model(tf_keras, "tk_text_h5", vocabulary=vocab)
    path = os.path.join(root, "tk_text.h5")
    model.save(path)
    cases.add("tk_text.h5", "model", path, [QUERY[:, None]],
              outputs(model.predict(QUERY[:, None], verbose=0)))
    model = _tabular_model(tf_keras, "tk_tab")
    for ext in (".keras",):
        path = os.path.join(root, "tk_tab" + ext)
        model.save(path)
        cases.add("tk_tab" + ext, "model", path, [TAB_IDS, TAB_X],
                  outputs(model.predict([TAB_IDS, TAB_X], verbose=0)))
    model = _tabular_model(tf_keras, "tk_tab_given", given=True)
    path = os.path.join(root, "tk_tab_given.h5")
    model.save(path)
    cases.add("tk_tab_given.h5", "model", path, [TAB_IDS, TAB_X],
              outputs(model.predict([TAB_IDS, TAB_X], verbose=0)))
    # Keras 3 (torch backend: it cannot predict on strings, so the text model is run
    # layer by layer: its TextVectorization on the strings, the rest on the ids)
    model, tv = _text_model(keras, "k3_text")
    ids = _k3(tv(QUERY[:, None]))
    rest = model.get_layer("out")(model.get_layer("pool")(model.get_layer("conv")(
        model.get_layer("emb")(ids))))
    path = os.path.join(root, "k3_text.keras")
    model.save(path)
    cases.add("k3_text.keras", "model", path, [QUERY[:, None]], [_k3(rest)])
    model = _tabular_model(keras, "k3_tab")
    path = os.path.join(root, "k3_tab.keras")
    model.save(path)
    cases.add("k3_tab.keras", "model", path, [TAB_IDS, TAB_X],
              outputs(model.predict([TAB_IDS, TAB_X], verbose=0)))
    return cases.run()


@pytest.mark.parametrize("case", ["tk_text.keras", "tk_text.h5", "tk_tab.keras",
                                  "tk_tab_given.h5", "k3_text.keras", "k3_tab.keras"])
def test_model_files_with_preprocessing(saved, case):
    check(saved[case])


def _save_cases():
    """(name, layers of a Sequential, input) for the save round trips: adapted state of
    every kind (vocabulary, idf weights, learned bins) and a fixed one."""
    corpus = CORPUS[:, None]
    tv = sepconv.TextVectorization(max_tokens=20, output_sequence_length=5,
                                   batch_input_shape=(None, 1), name="tv")
    tv.adapt(CORPUS)
    idf = sepconv.TextVectorization(output_mode="tf_idf", ngrams=2,
                                    batch_input_shape=(None, 1), name="tv_idf")
    idf.adapt(CORPUS)
    sl = sepconv.StringLookup(num_oov_indices=2, mask_token="", batch_input_shape=(None, 3),
                              name="sl")
    sl.adapt(np.asarray(["a", "b", "b", "c", "", "日本"]))
    il = sepconv.IntegerLookup(output_mode="multi_hot", batch_input_shape=(None, 3), name="il")
    il.adapt(np.asarray([3, 4, 4, 9]))
    di = sepconv.Discretization(num_bins=4, batch_input_shape=(None, 3), name="di")
    di.adapt(np.random.default_rng(0).standard_normal(100))
    return [
        ("text", [tv, sepconv.Embedding(20, 3, name="emb")], corpus),
        ("tf_idf", [idf, sepconv.Dense(2, name="d")], corpus),
        ("strings", [sl, sepconv.Embedding(10, 3, name="emb")],
         np.asarray([["a", "b", "zz"], ["", "c", "日本"]])),
        ("ids", [il, sepconv.Dense(2, name="d")], torch.tensor([[3, 4, 7], [9, 9, 1]])),
        ("bins", [di, sepconv.CategoryEncoding(4, output_mode="count", name="ce"),
                  sepconv.Dense(2, name="d")], torch.randn(4, 3, generator=torch.manual_seed(0))),
        ("hashing", [sepconv.Hashing(num_bins=5, batch_input_shape=(None, 2), name="hs")],
         np.asarray([["a", "b"], ["c", "日本"]])),
    ]


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_saved_by_sepconv_for_both_kerases(tmp_path, ext):
    """A Sequential starting with an adapted preprocessing layer -> save_keras_model ->
    tf-keras (.h5: an InputLayer of dtype string, the vocabulary / bins in the config) and
    Keras 3 (.keras; tf_idf weights stored by name as Keras 3 does) -> the same outputs, and
    back into sepconv."""
    for name, layers, x in _save_cases():
        model = torch.nn.Sequential(*layers).eval()
        with torch.no_grad():
            want = _np(model(x))
        path = tmp_path / f"{name}{ext}"
        sepconv.save_keras_model(model, path)
        if ext == ".h5":
            theirs = tf_keras.models.load_model(path)
            got = theirs(tf.constant(x) if isinstance(x, np.ndarray) else x.numpy()).numpy()
        else:
            theirs = keras.saving.load_model(path)
            got = x
            for layer in theirs.layers:  # (Keras 3 on torch cannot predict on strings)
                got = layer(got)
            got = _k3(got)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        with torch.no_grad():
            again = _np(sepconv.load_keras_model(path)(x))
        np.testing.assert_allclose(again, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_keras3_tf_idf_file_with_named_variables(tmp_path):
    """Keras 3 stores a tf_idf layer's idf_weights as vars/idf_weights, in the layer and in
    its inner StringLookup: read once."""
    tv = keras.layers.TextVectorization(output_mode="tf_idf", name="tv")
    tv.adapt(CORPUS)
    model = keras.Sequential([keras.Input((1,), dtype="string"), tv])
    model.save(tmp_path / "k3.keras")
    ours = sepconv.load_keras_model(tmp_path / "k3.keras")
    _same(ours(QUERY[:, None]), _k3(tv(QUERY[:, None])))


def test_config_round_trip_keeps_adapted_state():
    """Unlike tf-keras (None after adapt), get_config holds the learned vocabulary / bins,
    so from_config rebuilds the same layer."""
    tv = sepconv.TextVectorization(output_mode="tf_idf").adapt(CORPUS)
    again = sepconv.TextVectorization.from_config(tv.get_config())
    _same(again(QUERY), tv(QUERY))
    di = sepconv.Discretization(num_bins=3).adapt(np.arange(50.0))
    _same(sepconv.Discretization.from_config(di.get_config())(torch.arange(50.0)),
          di(torch.arange(50.0)))


def test_state_dict_carries_vocabulary_and_bins():
    """torch's state_dict holds the adapted state (extra state), so a fresh layer with the
    same arguments computes the same after load_state_dict."""
    for make, data, x in (
            (lambda: sepconv.TextVectorization(output_mode="tf_idf"), CORPUS, QUERY),
            (lambda: sepconv.StringLookup(mask_token="", num_oov_indices=2),
             np.asarray(["a", "b", "b", ""]), np.asarray([["a", "b", "q", ""]])),
            (lambda: sepconv.IntegerLookup(), np.asarray([5, 6, 6]),
             torch.tensor([[5, 6, 7]])),
            (lambda: sepconv.Discretization(num_bins=3), np.arange(40.0),
             torch.arange(40.0).reshape(4, 10))):
        layer = make().adapt(data)
        fresh = make()
        fresh.load_state_dict(layer.state_dict())
        _same(fresh(x), layer(x))


def test_output_shapes_dtypes_sparse_and_r_functions():
    ref = tf_keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="count")
    ours = sepconv.StringLookup(vocabulary=["a", "b"], output_mode="count")
    assert ours.compute_output_shape((None, 4)) == tuple(ref.compute_output_shape((None, 4)))
    for kwargs, shape in ((dict(num_tokens=4, output_mode="one_hot"), (None, 3)),
                          (dict(num_tokens=4, output_mode="multi_hot"), (None, 3))):
        assert sepconv.CategoryEncoding(**kwargs).compute_output_shape(shape) == tuple(
            tf_keras.layers.CategoryEncoding(**kwargs).compute_output_shape(shape))
    tv = sepconv.TextVectorization(vocabulary=["a"], output_sequence_length=6)
    assert tv.compute_output_shape((None, 1)) == tuple(
        tf_keras.layers.TextVectorization(vocabulary=["a"], output_sequence_length=6)
        .compute_output_shape((None, 1)))
    # int mode gives int64 (or the integer dtype asked for); the others float32
    assert ours(["a", "q"]).dtype == torch.float32
    assert sepconv.StringLookup(vocabulary=["a"], dtype="int32")(["a"]).dtype == torch.int32
    # Keras 3 writes dtype float32 for an int-mode lookup (tf-keras would refuse it): int64
    assert sepconv.StringLookup(vocabulary=["a"], dtype="float32")(["a"]).dtype == torch.int64
    with pytest.raises(ValueError, match="dtype"):
        sepconv.TextVectorization(dtype="int32")
    # sparse=True: the same numbers, dense
    sparse = tf_keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="multi_hot",
                                          sparse=True)
    x = np.asarray([["a", "q"], ["b", "b"]])
    _same(sepconv.StringLookup(vocabulary=["a", "b"], output_mode="multi_hot",
                               sparse=True)(x), tf.sparse.to_dense(sparse(x)))
    # R: layer_*(object, ...) applies the new layer to object
    out = sepconv.layer_string_lookup(np.asarray(["a", "b"]), vocabulary=["a", "b"])
    _same(out, torch.tensor([1, 2]))
    layer = sepconv.layer_text_vectorization(max_tokens=10.0, output_sequence_length=3.0)
    assert layer.max_tokens == 10 and layer.output_sequence_length == 3


def test_text_vectorization_ragged_and_scalar_inputs():
    vocab = ["a", "b", "日本"]
    ref = tf_keras.layers.TextVectorization(vocabulary=vocab, ragged=True)
    ours = sepconv.TextVectorization(vocabulary=vocab, ragged=True)
    x = np.asarray(["a b zz 日本", "", "B!"])
    assert [p.tolist() for p in ours(x)] == ref(x).to_list()
    for mode in ("int", "count"):
        ref = tf_keras.layers.TextVectorization(vocabulary=vocab, output_mode=mode)
        ours = sepconv.TextVectorization(vocabulary=vocab, output_mode=mode)
        _same(ours("a b a q"), ref(tf.constant("a b a q")))


# -- Keras 3 files' encoders: any rank, as Keras 3 computes (strings included) ------------
def _keras3_twin(layer):
    from sepconv.interop.models import build_layer
    return build_layer(keras.saving.serialize_keras_object(layer), "keras3")


@pytest.mark.parametrize("shape", [(), (1,), (5,), (3, 1), (2, 5), (2, 3, 4), (2, 3, 2, 2)])
def test_keras3_encoders_of_any_rank_compute_what_keras3_computes(shape):
    """StringLookup on strings, IntegerLookup, Hashing, CategoryEncoding and Discretization
    built from Keras 3 configs: Keras 3's values, shapes and lookup dtypes (int64 counts)
    for every output mode.  Keras 3 bins a rank >= 3 input's multi_hot / count / tf_idf
    along axis 1 (its reduction axis), ``(batch, steps, f) -> (batch, f, depth)``, and
    one-hot encodes a scalar or a ``(1,)`` input as ``(1, depth)``."""
    rng = np.random.default_rng(len(shape))
    words = np.array(["a", "b", "c", "zz", "é", "", "?"])[rng.integers(0, 7, shape)]
    ids = rng.integers(0, 5, shape)
    L = keras.layers
    for mode in ("one_hot", "multi_hot", "count", "tf_idf"):
        idf = dict(idf_weights=[0.5, 1.0, 2.0, 3.0]) if mode == "tf_idf" else {}
        layers = [(L.StringLookup(vocabulary=["a", "b", "é", ""], output_mode=mode, **idf),
                   words),
                  (L.IntegerLookup(vocabulary=[1, 2, 3, 4], output_mode=mode, **idf), ids)]
        if mode != "tf_idf":
            layers += [(L.Hashing(num_bins=4, output_mode=mode), words),
                       (L.CategoryEncoding(num_tokens=5, output_mode=mode), ids),
                       (L.Discretization(bin_boundaries=[1.0, 2.5], output_mode=mode),
                        ids.astype(np.float32))]
        for theirs, x in layers:
            if shape == () and isinstance(theirs, L.Hashing):
                continue  # Keras 3's Hashing fails on a scalar string (IndexError)
            want = keras.ops.convert_to_numpy(theirs(x))
            ours = _keras3_twin(theirs)
            got = ours(x if x.dtype.kind in "USO" else torch.from_numpy(x))
            label = f"{type(theirs).__name__}({mode}) of shape {shape}"
            assert tuple(got.shape) == want.shape, label
            assert ours.compute_output_shape(shape) == want.shape, label
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, err_msg=label)
            if "Lookup" in type(theirs).__name__:
                assert str(got.dtype).replace("torch.", "") == str(want.dtype), label


def test_keras3_count_weights_follow_the_binned_axis():
    x = np.random.default_rng(0).integers(0, 4, (2, 3, 5))
    w = np.random.default_rng(1).standard_normal((2, 3, 5)).astype(np.float32)
    theirs = keras.layers.CategoryEncoding(num_tokens=4, output_mode="count")
    want = keras.ops.convert_to_numpy(theirs(x, count_weights=w))
    got = _keras3_twin(theirs)(torch.from_numpy(x), count_weights=torch.from_numpy(w))
    assert want.shape == (2, 5, 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
