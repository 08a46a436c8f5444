"""``HashedCrossing`` against tf-keras 2.21 and Keras 3.15: the exact bins of crosses of
string and integer features (every integer width, negative and 64-bit-wide values, text
beyond ASCII), every input rank Keras takes, ``one_hot``; the layer protocol; and a
model crossing a string and an integer feature from both Kerases' files and back."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import sepconv  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402
from sepconv.interop.models import build_layer  # noqa: E402
from tf_keras_compare import check_signature  # noqa: E402

_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


def _feature(draw, kind, shape):
    n = int(np.prod(shape)) if shape else 1
    if kind == "str":
        values = draw(st.lists(st.text(max_size=6), min_size=n, max_size=n))
        arr = np.array(values, dtype=object)
        return arr.reshape(shape) if shape else np.array(values[0], dtype=object)
    info = np.iinfo(kind)
    values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n,
                           max_size=n))
    return np.array(values, dtype=kind).reshape(shape)


@st.composite
def crossings(draw):
    shape = draw(st.sampled_from([(), (4,), (4, 1), (1,)]))
    kinds = draw(st.lists(st.sampled_from(("str",) + _INT_DTYPES), min_size=2, max_size=4))
    return [_feature(draw, k, shape) for k in kinds]


def _tf_feature(f):
    return tf.constant(f.astype(str) if f.dtype == object else f)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(features=crossings(), num_bins=st.one_of(st.integers(1, 12),
                                                st.integers(1, 2 ** 62)),
       one_hot=st.booleans())
def test_bins_match_tf_keras_and_keras3(features, num_bins, one_hot):
    mode = "one_hot" if one_hot and num_bins <= 12 else "int"
    ours = sepconv.HashedCrossing(num_bins, output_mode=mode)
    got = ours(features)
    want = tf_keras.layers.HashedCrossing(num_bins, output_mode=mode)(
        [_tf_feature(f) for f in features]).numpy()
    assert got.dtype == (torch.int64 if mode == "int" else torch.float32)
    np.testing.assert_array_equal(got.numpy(), want)
    k3_layer = keras.layers.HashedCrossing(num_bins, output_mode=mode)
    k3 = keras.ops.convert_to_numpy(k3_layer([_tf_feature(f) for f in features]))
    # built from Keras 3's config (a .keras file's layer): Keras 3's numbers and shapes
    from_k3 = build_layer(keras.saving.serialize_keras_object(k3_layer), "keras3")
    np.testing.assert_array_equal(from_k3(features).numpy(), k3)
    assert tuple(from_k3.compute_output_shape([f.shape for f in features])) == k3.shape
    if mode == "one_hot" and features[0].shape in ((), (1,)):  # Keras 3: (1, num_bins)
        assert k3.shape == (1, num_bins)
        k3 = k3.reshape(num_bins)
    np.testing.assert_array_equal(got.numpy(), k3)
    assert tuple(got.shape) == tuple(ours.compute_output_shape([f.shape for f in features]))


def test_documented_example_and_input_kinds():
    """tf-keras' docstring example; torch tensors, lists, bytes and numpy unicode arrays
    give the same bins as numpy object arrays."""
    feat1, feat2 = ["A", "B", "A", "B", "A"], [101, 101, 101, 102, 102]
    layer = sepconv.HashedCrossing(num_bins=5)
    np.testing.assert_array_equal(layer([feat1, feat2]).numpy(), [1, 4, 1, 1, 3])
    same = [layer((np.array(feat1), torch.tensor(feat2))),
            layer([[f.encode() for f in feat1], np.array(feat2, np.int16)]),
            layer([np.array(feat1, dtype=object), torch.tensor(feat2, dtype=torch.int32)])]
    for out in same:
        np.testing.assert_array_equal(out.numpy(), [1, 4, 1, 1, 3])
    one_hot = sepconv.HashedCrossing(5, output_mode="one_hot")([feat1, feat2])
    ref = tf_keras.layers.HashedCrossing(5, output_mode="one_hot")(
        (tf.constant(feat1), tf.constant(feat2)))
    np.testing.assert_array_equal(one_hot.numpy(), ref.numpy())
    # the dtype argument (integer in int mode), as tf-keras
    out = sepconv.HashedCrossing(5, dtype="int32")([feat1, feat2])
    assert out.dtype == torch.int32
    assert tf_keras.layers.HashedCrossing(5, dtype="int32")(
        (tf.constant(feat1), tf.constant(feat2))).dtype == tf.int32


def test_signature_config_and_errors():
    check_signature(sepconv.HashedCrossing, tf_keras.layers.HashedCrossing,
                    sepconv.layer_hashed_crossing, required=1)
    for mode in ("int", "one_hot"):
        ours = sepconv.HashedCrossing(7, output_mode=mode)
        ref = tf_keras.layers.HashedCrossing(7, output_mode=mode)
        assert ours.get_config().keys() == ref.get_config().keys()
        assert {k: v for k, v in ours.get_config().items() if k != "name"} == \
            {k: v for k, v in ref.get_config().items() if k != "name"}
        again = sepconv.HashedCrossing.from_config(ref.get_config())
        assert again.get_config() == {**ref.get_config()}
        k3 = keras.layers.HashedCrossing(7, output_mode=mode).get_config()
        assert sepconv.HashedCrossing.from_config(k3).output_mode == mode
    r = sepconv.layer_hashed_crossing(num_bins=9.0)
    assert r.num_bins == 9 and isinstance(r.num_bins, int) and r.get_weights() == []
    with pytest.raises(ValueError, match="num_bins=0"):
        sepconv.HashedCrossing(0)
    with pytest.raises(ValueError, match="output_mode"):
        sepconv.HashedCrossing(3, output_mode="multi_hot")
    layer = sepconv.HashedCrossing(3)
    with pytest.raises(ValueError, match="list or tuple"):
        layer(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least two"):
        layer([torch.tensor([1, 2])])
    with pytest.raises(ValueError, match="integer or string"):
        layer([torch.tensor([1.0, 2.0]), torch.tensor([1, 2])])
    with pytest.raises(ValueError, match="integer or string"):
        layer([np.array([1.5, 2.0]), ["a", "b"]])
    with pytest.raises(ValueError, match="equal shape"):
        layer([torch.tensor([1, 2]), torch.tensor([1, 2, 3])])
    with pytest.raises(ValueError, match=r"\[batch_size, 1\]"):
        layer([torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64)])
    # tf-keras refuses the same
    ref = tf_keras.layers.HashedCrossing(3)
    for bad in ([tf.constant([1.0, 2.0]), tf.constant([1, 2])],
                [tf.ones((2, 2), tf.int64), tf.ones((2, 2), tf.int64)]):
        with pytest.raises(ValueError):
            ref(bad)


def _crossing_model(K, mode):
    """Crossing a string and an integer feature (a tabular model's feature cross), then
    an embedding of the bins or a linear model on their one-hot rows."""
    L = K.layers
    city = L.Input(shape=(1,), dtype="string", name="city")
    hour = L.Input(shape=(1,), dtype="int64", name="hour")
    crossed = L.HashedCrossing(num_bins=24, output_mode=mode)([city, hour])
    if mode == "int":
        h = L.Flatten()(L.Embedding(24, 3)(crossed))
    else:
        h = crossed
    return K.Model([city, hour], L.Dense(2)(h))


def test_crossing_model_files_both_ways(tmp_path):
    rng = np.random.default_rng(9)
    city = np.array([["paris"], ["lyon"], ["nîmes"], ["paris"], ["metz"]], dtype=object)
    hour = rng.integers(0, 24, (5, 1)).astype(np.int64)
    cases, names = Cases(tmp_path), []
    for mode in ("int", "one_hot"):
        tf_keras.utils.set_random_seed(2)
        model = _crossing_model(tf_keras, mode)
        y = outputs(model.predict([city.astype(str), hour], verbose=0))
        for ext in (".h5", ".keras"):
            path = os.path.join(tmp_path, f"tk_{mode}{ext}")
            model.save(path)
            cases.add(f"tk_{mode}{ext}", "model", path, [city.astype(str), hour], y)
            names.append(f"tk_{mode}{ext}")
    # Keras 3 (torch backend): integer features (its string inputs need TensorFlow's
    # backend), crossed one-hot into a linear model
    L = keras.layers
    keras.utils.set_random_seed(2)
    store, day = L.Input(shape=(1,), dtype="int64"), L.Input(shape=(1,), dtype="int32")
    k3_model = keras.Model([store, day], L.Dense(2)(L.HashedCrossing(
        num_bins=32, output_mode="one_hot")([store, day])))
    ints = [rng.integers(-10 ** 12, 10 ** 12, (6, 1)), rng.integers(0, 7, (6, 1)).astype(
        np.int32)]
    path = os.path.join(tmp_path, "k3.keras")
    k3_model.save(path)
    cases.add("k3.keras", "model", path, ints, outputs(k3_model.predict(ints, verbose=0)))
    names.append("k3.keras")
    results = cases.run()
    for name in names:
        check(results[name])
    # and back: tf-keras reads sepconv's .h5, Keras 3 its .keras (Keras 3 computes the
    # same bins through TensorFlow)
    for mode in ("int", "one_hot"):
        ours = sepconv.load_keras_model(os.path.join(tmp_path, f"tk_{mode}.keras"))
        with torch.no_grad():
            want = ours(city.astype(str), torch.from_numpy(hour)).numpy()
        sepconv.save_keras_model(ours, os.path.join(tmp_path, f"back_{mode}.h5"))
        again = tf_keras.models.load_model(os.path.join(tmp_path, f"back_{mode}.h5"))
        np.testing.assert_allclose(again.predict([city.astype(str), hour], verbose=0), want,
                                   rtol=1e-5, atol=1e-6)
        sepconv.save_keras_model(ours, os.path.join(tmp_path, f"back_{mode}.keras"))
        k3 = keras.saving.load_model(os.path.join(tmp_path, f"back_{mode}.keras"))
        layer = next(la for la in k3.layers if la.__class__.__name__ == "HashedCrossing")
        bins = keras.ops.convert_to_numpy(layer([tf.constant(city.astype(str)),
                                                 tf.constant(hour)]))
        mine = next(m for m in ours.modules() if isinstance(m, sepconv.HashedCrossing))
        np.testing.assert_array_equal(bins, mine([city, hour]).numpy())
