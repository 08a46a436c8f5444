"""Model files with custom layers and activations, loaded with ``custom_objects``.

Keras' "Text classification with Transformer" example defines two layers in Python
(``TokenAndPositionEmbedding``, ``TransformerBlock``); a second model holds a custom block
with batch normalisation before a dense layer and a custom activation function.  Each is
saved by tf-keras (``.h5``, ``.keras``, SavedModel) and Keras 3 (``.keras``), then loaded in the
TF-free child with the torch modules of tests/custom_layers.py as ``custom_objects``: the
outputs equal ``model.predict``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from keras_files import Cases, call_outputs, check  # noqa: E402


def _keras_classes(K):
    """The example's layers for Keras ``K`` (tf-keras or Keras 3)."""
    L = K.layers
    register = K.saving.register_keras_serializable(package="Custom")

    @register
    class TokenAndPositionEmbedding(L.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim, **kw):
            super().__init__(**kw)
            self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
            self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            steps = x.shape[-1]
            positions = K.ops.arange(0, steps, 1) if K is keras else tf.range(0, steps, 1)
            return self.token_emb(x) + self.pos_emb(positions)

        def get_config(self):
            return {**super().get_config(), "maxlen": self.maxlen,
                    "vocab_size": self.vocab_size, "embed_dim": self.embed_dim}

    @register
    class TransformerBlock(L.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kw):
            super().__init__(**kw)
            self.embed_dim, self.num_heads, self.ff_dim, self.rate = \
                embed_dim, num_heads, ff_dim, rate
            self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = K.Sequential([L.Dense(ff_dim, activation="relu"),
                                     L.Dense(embed_dim)])
            self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
            self.scale = self.add_weight(name="scale", shape=(embed_dim,),
                                         initializer="random_normal")
            self.dropout1 = L.Dropout(rate)
            self.dropout2 = L.Dropout(rate)

        def call(self, inputs, training=None):
            out1 = self.layernorm1(inputs + self.dropout1(self.att(inputs, inputs),
                                                          training=training))
            f = self.ffn(out1)
            return self.layernorm2(out1 + self.dropout2(f, training=training)) * self.scale

        def get_config(self):
            return {**super().get_config(), "embed_dim": self.embed_dim,
                    "num_heads": self.num_heads, "ff_dim": self.ff_dim, "rate": self.rate}

    @register
    class NormBlock(L.Layer):
        def __init__(self, units, channels, **kw):
            super().__init__(**kw)
            self.units, self.channels = units, channels
            self.norm = L.BatchNormalization()
            self.proj = L.Dense(units)

        def call(self, x, training=None):
            return self.proj(self.norm(x, training=training))

        def get_config(self):
            return {**super().get_config(), "units": self.units, "channels": self.channels}

    @register
    def scaled_tanh(x):
        return 1.7159 * K.activations.tanh(2.0 * x / 3.0)

    return TokenAndPositionEmbedding, TransformerBlock, NormBlock, scaled_tanh


def _transformer(K):
    L = K.layers
    embed, block, _, _ = _keras_classes(K)
    ids = L.Input(shape=(12,), dtype="int32")
    x = block(8, 2, 16)(embed(12, 50, 8)(ids))
    return K.Model(ids, L.Dense(2, activation="softmax")(L.GlobalAveragePooling1D()(x)))


def _norm_block(K):
    """Trained a step, so the moving statistics are not their initial values."""
    L = K.layers
    _, _, norm_block, scaled_tanh = _keras_classes(K)
    x = L.Input(shape=(10, 3))
    h = L.GlobalAveragePooling1D()(norm_block(5, 3)(x))
    model = K.Model(x, L.Dense(4, activation=scaled_tanh)(h))
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 10, 3)) * 3 + 1, rng.random((16, 4)), epochs=2,
              verbose=0)
    return model


MODELS = {"transformer": _transformer, "norm_block": _norm_block}
# ("" : tf-keras' SavedModel directory, model.save(path, save_format="tf"))
WRITERS = {"tk": (tf_keras, (".h5", ".keras", "")), "k3": (keras, (".keras",))}
FILES = [f"{w}_{m}{ext}" for m in MODELS for w, (_, exts) in WRITERS.items() for ext in exts]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("custom_files"))
    cases = Cases(root)
    for writer, (K, exts) in WRITERS.items():
        K.utils.set_random_seed(7)
        for name, build in MODELS.items():
            model = build(K)
            rng = np.random.default_rng(len(name))
            x = [rng.integers(0, 50, (3, 12)).astype(np.int32)] if name == "transformer" \
                else [rng.standard_normal((3, 10, 3)).astype(np.float32)]
            y = call_outputs(model, x[0])
            for ext in exts:
                path = os.path.join(root, f"{writer}_{name}{ext}")
                model.save(path, **({} if ext else {"save_format": "tf"}))
                cases.add(f"{writer}_{name}{ext}", "model", path, x, y,
                          custom="custom_layers")
        cases.add(f"{writer}_missing", "error",
                  os.path.join(root, f"{writer}_transformer{exts[-1]}"))
    return cases.run()


@pytest.mark.parametrize("case", FILES)
def test_custom_layers_load_with_the_users_modules(results, case):
    check(results[case])


@pytest.mark.parametrize("writer", list(WRITERS))
def test_without_custom_objects_the_message_says_what_to_pass(results, writer):
    r = results[f"{writer}_missing"]
    assert "crash" not in r, r["crash"]
    assert r["error"] is not None and "\n" not in r["error"]
    assert "custom_objects={'TokenAndPositionEmbedding': YourModule}" in r["error"]


def test_a_module_without_the_keras_attribute_is_refused_naming_it(tmp_path):
    """From a .keras file the weights go in by attribute name: a module that names its
    feed-forward block otherwise is told which one the file holds."""
    import torch
    import sepconv
    import custom_layers
    from sepconv.interop import KerasFileError
    model = _transformer(tf_keras)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")

    class Renamed(custom_layers.TransformerBlock):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.mlp = self.ffn
            del self.ffn

    objects = dict(custom_layers.CUSTOM_OBJECTS, TransformerBlock=Renamed)
    with pytest.raises(KerasFileError, match=r"\.ffn, which Renamed does "
                       r"not have \(its submodules: att, layernorm1, layernorm2"):
        sepconv.load_keras_model(tmp_path / "m.keras", custom_objects=objects)

    class Short(torch.nn.Module):  # too few weights for the .h5 file's list
        def __init__(self, maxlen, vocab_size, embed_dim):
            super().__init__()
            self.token_emb = sepconv.Embedding(vocab_size, embed_dim)

    objects = dict(custom_layers.CUSTOM_OBJECTS, TokenAndPositionEmbedding=Short)
    with pytest.raises(KerasFileError, match="holds 2 weights, the module 1"):
        sepconv.load_keras_model(tmp_path / "m.h5", custom_objects=objects)
    with pytest.raises(TypeError, match="custom_objects"):
        sepconv.load_keras_model(tmp_path / "m.h5", custom_objects=[Short])


def test_convert_takes_the_custom_objects_module(tmp_path):
    """``python -m sepconv convert m.h5 m.pt --custom custom_layers``: the module's
    CUSTOM_OBJECTS; the saved module loads back and computes the same."""
    import torch
    from sepconv import cli
    model = _norm_block(tf_keras)
    model.save(tmp_path / "m.h5")
    x = np.random.default_rng(2).standard_normal((2, 10, 3)).astype(np.float32)
    assert cli.main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "m.pt")]) == 2
    assert cli.main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "m.pt"),
                     "--custom", "custom_layers"]) == 0
    again = torch.load(tmp_path / "m.pt", weights_only=False)
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.from_numpy(x)).numpy(),
                                   model.predict(x, verbose=0), rtol=0, atol=1e-5)
    assert cli.main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "m.pt"),
                     "--custom", str(tmp_path / "nothing.py")]) == 2


def test_custom_registry_entries_resolve_as_in_tf_keras():
    """In ``custom_object_scope`` a name or a Keras config dict (by ``class_name`` or
    Keras 3's ``"package>Name"``) resolves to the user's object as tf-keras' own
    ``custom_object_scope`` + ``regularizers.get`` / ``activations.get`` resolve it: a
    class built from the dict's config, a function returned as it is."""
    import sepconv
    from sepconv._registry import custom_object_scope

    class Scaled:  # a regularizer class with a config
        def __init__(self, factor=1.0):
            self.factor = factor

        def __call__(self, x):
            return self.factor * (x ** 2).sum()

        def get_config(self):
            return {"factor": self.factor}

    def doubled(x):
        return 2.0 * x

    objects = {"Scaled": Scaled, "doubled": doubled}
    entry = {"class_name": "Scaled", "config": {"factor": 0.25}}
    with tf_keras.utils.custom_object_scope(objects):
        want = tf_keras.regularizers.get(entry)
        want_fn = tf_keras.activations.get("doubled")
    for ident in (entry, dict(entry, class_name="Other", registered_name="Custom>Scaled")):
        with custom_object_scope(objects):
            got = sepconv.regularizers.get(ident, "kernel_regularizer")
        assert type(got) is type(want) is Scaled and got.factor == want.factor == 0.25
    with custom_object_scope(objects):
        assert sepconv.activations.get("doubled", "activation") is want_fn is doubled
    with pytest.raises(ValueError, match="kernel_regularizer"):  # the scope has ended
        sepconv.regularizers.get(entry, "kernel_regularizer")
