"""Keras' alias names (``Convolution1D``, ``MaxPool2D``, ``GlobalAvgPool1D``, ...): the same
classes as the canonical names, exactly the aliases tf-keras 2.21 and Keras 3.15 export;
configs write the canonical name (as both Kerases do); files whose configs name an alias
(tf-keras resolves those, Keras 3 does not) load in a process without TensorFlow."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import sepconv  # noqa: E402
from sepconv.layers.aliases import ALIASES  # noqa: E402
from sepconv.layers.base import KERAS_CLASSES, get_layer_class  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402


def _aliases_of(module):
    """The public names of ``module.layers`` that name a class of another name which
    sepconv has (their other aliases, e.g. Keras 3's experimental layers, aside)."""
    out = {}
    for name in dir(module.layers):
        obj = getattr(module.layers, name)
        if isinstance(obj, type) and obj.__name__ != name and \
                dict.__contains__(KERAS_CLASSES, obj.__name__):
            out[name] = obj.__name__
    return out


@pytest.mark.parametrize("module", [tf_keras, keras], ids=["tf_keras", "keras3"])
def test_the_aliases_are_exactly_keras_aliases(module):
    assert _aliases_of(module) == ALIASES


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_is_the_class_exported_and_resolved(alias):
    cls = getattr(sepconv, alias)
    assert cls is getattr(sepconv, ALIASES[alias]) is get_layer_class(alias)
    assert alias in sepconv.__all__ and alias in KERAS_CLASSES
    assert KERAS_CLASSES.get(alias) is cls
    # iteration (error messages, coverage tests) lists canonical names only
    assert alias not in list(KERAS_CLASSES)
    # the config (and a file written back) names the class as Keras writes it
    assert getattr(tf_keras.layers, alias).__name__ == cls.__name__


def test_unknown_name_still_raises_naming_it():
    with pytest.raises(ValueError, match="'Convolution4D'"):
        get_layer_class("Convolution4D")
    assert KERAS_CLASSES.get("Convolution4D") is None
    assert KERAS_CLASSES.get(["unhashable"]) is None


def _models(K):
    """Every alias, in three small functional models (1D, 2D, 3D), built by alias."""
    L = K.layers
    x1 = K.Input((12, 3))
    h = L.Convolution1D(4, 3, padding="same", name="c1")(x1)
    h = L.SeparableConvolution1D(4, 3, name="s1")(h)
    h = L.Convolution1DTranspose(3, 2, name="t1")(h)
    h = L.AvgPool1D(2, padding="same", name="a1")(L.MaxPool1D(name="m1")(h))
    y1 = L.Concatenate(name="cat1")([L.GlobalMaxPool1D(name="gm1")(h),
                                     L.GlobalAvgPool1D(name="ga1")(h)])
    x2 = K.Input((9, 8, 2))
    h = L.Convolution2D(3, 2, name="c2")(x2)
    h = L.SeparableConvolution2D(3, 2, padding="same", name="s2")(h)
    h = L.Convolution2DTranspose(2, 2, strides=2, name="t2")(h)
    h = L.AvgPool2D(name="a2")(L.MaxPool2D(3, strides=1, name="m2")(h))
    y2 = L.Concatenate(name="cat2")([L.GlobalMaxPool2D(name="gm2")(h),
                                     L.GlobalAvgPool2D(name="ga2")(h)])
    x3 = K.Input((6, 5, 4, 2))
    h = L.Convolution3D(3, 2, name="c3")(x3)
    h = L.Convolution3DTranspose(2, 2, name="t3")(h)
    h = L.AvgPool3D(2, padding="same", name="a3")(L.MaxPool3D(2, strides=1, name="m3")(h))
    y3 = L.Concatenate(name="cat3")([L.GlobalMaxPool3D(name="gm3")(h),
                                     L.GlobalAvgPool3D(name="ga3")(h)])
    return {"d1": K.Model(x1, y1), "d2": K.Model(x2, y2), "d3": K.Model(x3, y3)}


_TO_ALIAS = {}
for _alias, _name in ALIASES.items():  # the longest alias of each class (one is enough)
    _TO_ALIAS.setdefault(_name, _alias)


def _aliased(config):
    """A config with every canonical class name replaced by its alias; the count."""
    count = 0

    def walk(v):
        nonlocal count
        if isinstance(v, dict):
            out = {k: walk(w) for k, w in v.items()}
            if out.get("class_name") in _TO_ALIAS:
                out["class_name"] = _TO_ALIAS[out["class_name"]]
                count += 1
            return out
        if isinstance(v, list):
            return [walk(w) for w in v]
        return v

    return walk(config), count


def _alias_h5(src, dst):
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        raw = f.attrs["model_config"]
        config, count = _aliased(json.loads(raw if isinstance(raw, str) else raw.decode()))
        f.attrs["model_config"] = json.dumps(config)
    return count


def _alias_keras(src, dst):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config, count = _aliased(json.loads(data))
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return count


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("alias_files"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(3)
    counts = {}
    for name, model in _models(tf_keras).items():
        rng = np.random.default_rng(len(name))
        x = [rng.standard_normal((2,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)]
        y = outputs(model.predict(x[0], verbose=0))
        for ext, alias in ((".h5", _alias_h5), (".keras", _alias_keras)):
            path = os.path.join(root, f"{name}{ext}")
            model.save(path)
            aliased = os.path.join(root, f"{name}_aliased{ext}")
            counts[name + ext] = alias(path, aliased)
            # tf-keras itself reads the aliases: the files are ones it would load
            again = tf_keras.models.load_model(aliased)
            np.testing.assert_allclose(outputs(again.predict(x[0], verbose=0))[0], y[0],
                                       atol=1e-6)
            for file in (path, aliased):
                cases.add(os.path.basename(file), "model", file, x, y)
    return cases.run(), counts


FILES = [f"{m}{s}{e}" for m in ("d1", "d2", "d3") for s in ("", "_aliased")
         for e in (".h5", ".keras")]


@pytest.mark.parametrize("case", FILES)
def test_files_naming_aliases_load(results, case):
    check(results[0][case])


def test_every_alias_was_written_into_a_file(results):
    # 1D: 7 aliased classes, 2D: 7, 3D: 6 (no SeparableConv3D), in both files
    assert results[1] == {"d1.h5": 7, "d1.keras": 7, "d2.h5": 7, "d2.keras": 7,
                          "d3.h5": 6, "d3.keras": 6}


def test_layer_built_by_alias_is_written_with_the_canonical_name(tmp_path):
    model = torch.nn.Sequential(
        sepconv.Convolution1D(2, 3, input_shape=(6, 2)), sepconv.GlobalAvgPool1D())
    sepconv.save_keras_model(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        raw = f.attrs["model_config"]
    text = raw if isinstance(raw, str) else raw.decode()
    assert '"Conv1D"' in text and '"GlobalAveragePooling1D"' in text
    assert "Convolution1D" not in text and "GlobalAvgPool1D" not in text
    theirs = tf_keras.models.load_model(tmp_path / "m.h5")
    x = np.random.default_rng(0).standard_normal((2, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(theirs.predict(x, verbose=0),
                               model(torch.from_numpy(x)).detach().numpy(),
                               atol=1e-5)
