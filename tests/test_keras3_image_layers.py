"""Keras 3's image preprocessing layers that tf-keras 2 lacks, and ``ReversibleEmbedding``,
against Keras 3.15 on the torch backend: signatures, configs (sepconv's layer built from
Keras' own serialized layer, as a ``.keras`` file is loaded, gives Keras' config back),
inference for both data formats, the training transforms given Keras' own transformation
dicts, the random draws' ranges, refusals, R functions, and Keras 3 ``.keras`` models
holding them loaded by sepconv without TensorFlow."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

import sepconv  # noqa: E402
from sepconv.interop.models import build_layer  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]

# class -> Keras arguments for the config / inference / transform checks (several sets)
CASES = {
    "AutoContrast": [{}, {"value_range": (0, 1)}, {"value_range": [255, 0]}],
    "Equalization": [{}, {"bins": 16}, {"value_range": (0, 1)}],
    "Solarization": [{"addition_factor": 0.3, "threshold_factor": 0.6},
                     {"addition_factor": (0.1, 0.2), "threshold_factor": 1.0,
                      "value_range": (0, 1), "seed": 3}],
    "RandomGrayscale": [{}, {"factor": 1.0, "seed": 2}],
    "RandomInvert": [{}, {"factor": 0.4, "value_range": (0, 1)}],
    "RandomColorDegeneration": [{"factor": 0.5}, {"factor": (0.2, 0.9), "value_range": (0, 1)}],
    "RandomPosterization": [{"factor": 4}, {"factor": (2, 7)}, {"factor": (3, 3)},
                            {"factor": 5, "value_range": (0, 1)}],
    "RandomSaturation": [{"factor": 0.5}, {"factor": (0.1, 0.9), "value_range": (0, 1)}],
    "RandomHue": [{"factor": 0.5}, {"factor": (0.2, 1.0), "value_range": (0, 1)}],
    "RandomSharpness": [{"factor": 0.5}, {"factor": (0.1, 0.9), "value_range": (0, 1)}],
    # (8 x 12 images: Keras' torch backend truncates the clip limit to an integer and
    # replicates the padding; test_clahe_is_tensorflow_backends_numbers for the rest)
    "ContrastLimitedAdaptiveHistogramEqualization": [
        {"clip_limit": 32.0, "tile_grid_size": (4, 3)},
        {"clip_limit": 0.0, "tile_grid_size": (1, 1)},
        {"value_range": (0, 1), "clip_limit": 64.0, "tile_grid_size": (2, 3)}],
    "MaxNumBoundingBoxes": [{"max_number": 3}],
    "AugMix": [{}, {"num_chains": 2, "chain_depth": 1, "factor": 0.5, "all_ops": False}],
    "CutMix": [{}, {"factor": 0.5, "seed": 1}],
    "MixUp": [{}, {"alpha": 0.5}],
    "RandAugment": [{}, {"num_ops": 3, "factor": (0.1, 0.4), "interpolation": "nearest"}],
    "RandomColorJitter": [{}, {"brightness_factor": 0.2, "contrast_factor": (0.1, 0.3),
                               "saturation_factor": 0.4, "hue_factor": 0.2}],
    "RandomElasticTransform": [{}, {"factor": 0.5, "scale": (0.2, 0.4), "fill_mode": "wrap"}],
    "RandomErasing": [{}, {"factor": 0.5, "scale": 0.3, "fill_value": 1.0}],
    "RandomGaussianBlur": [{}, {"kernel_size": (3, 5), "sigma": (0.2, 0.8)}],
    "RandomPerspective": [{}, {"factor": 0.5, "scale": 0.5, "interpolation": "nearest"}],
    "RandomShear": [{}, {"x_factor": 0.3, "y_factor": (0.1, 0.2), "fill_mode": "constant"}],
}
#: The layers whose training transform sepconv implements (Keras' numbers, given Keras'
#: transformation), the others refuse training.
TRAINED = ["AutoContrast", "Equalization", "Solarization", "RandomGrayscale", "RandomInvert",
           "RandomColorDegeneration", "RandomPosterization", "RandomSaturation", "RandomHue",
           "RandomSharpness", "ContrastLimitedAdaptiveHistogramEqualization",
           "MaxNumBoundingBoxes"]
REFUSED = sorted(set(CASES) - set(TRAINED))
NAMES = sorted(CASES) + ["Pipeline", "ReversibleEmbedding"]


def _np(y):
    return keras.ops.convert_to_numpy(y)


def _images(rng, shape=(3, 8, 12, 3), value_range=(0, 255)):
    lo, hi = value_range
    x = rng.uniform(lo, hi, size=shape).astype(np.float32)
    x[0, :2, :3] = lo  # saturated corners: clipping and flat regions
    x[-1, -1, -2:] = hi
    return x


def _plain(value):
    """Configs compared as JSON holds them: tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _ours_from_keras(theirs):
    return build_layer(keras.saving.serialize_keras_object(theirs), "keras3")


def _config_without_common(config):
    return {k: v for k, v in _plain(config).items()
            if k not in ("name", "dtype", "trainable", "batch_input_shape")}


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_keras3_then_the_common_arguments(name):
    theirs = inspect.signature(getattr(keras.layers, name).__init__).parameters
    theirs = [(p.name, p.default) for p in theirs.values()
              if p.name not in ("self", "kwargs")]
    ours = list(inspect.signature(getattr(sepconv, name).__init__).parameters.values())[1:]
    ours_pairs = [(p.name, p.default) for p in ours]
    if name == "Pipeline":  # Keras': (layers, name=None): name is among the common ones
        assert ours_pairs[0] == ("layers", inspect.Parameter.empty)
        assert [p.name for p in ours[1:]] == COMMON
        return
    # Keras' **kwargs carry the base class' data_format (and Embedding's
    # activity_regularizer): sepconv names them, after Keras' own arguments
    extra = {"ReversibleEmbedding": ["activity_regularizer"]}.get(name)
    if extra is None:
        extra = [] if "data_format" in dict(theirs) else ["data_format"]
    assert ours_pairs[:len(theirs)] == theirs
    assert [p.name for p in ours[len(theirs):]] == extra + COMMON
    assert all(p.default is None for p in ours[len(theirs):])
    assert getattr(sepconv, name).KERAS3_ONLY is True


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_inference_and_transform_match_keras3(name):
    """For each argument set and both data formats: Keras' config back, inference equal,
    and (for the implemented ones) Keras' ``transform_images`` given its own random
    transformation."""
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    for kwargs in CASES[name]:
        for fmt in ("channels_last", "channels_first"):
            theirs = getattr(keras.layers, name)(**kwargs, data_format=fmt)
            ours = _ours_from_keras(theirs)
            want_config = _config_without_common(theirs.get_config())
            assert _config_without_common(ours.get_config()) == want_config, (name, kwargs)
            again = type(ours).from_config(ours.get_config())
            assert _plain(again.get_config()) == _plain(ours.get_config())
            vr = kwargs.get("value_range", (0, 255))
            x = _images(rng, value_range=sorted(vr))
            if fmt == "channels_first":
                x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
            want = _np(theirs(x, training=False))
            ours.eval()
            got = ours(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * max(vr),
                                       err_msg=f"{name}({kwargs}, {fmt}) inference")
            # one unbatched image too
            got1 = ours(torch.from_numpy(x[0])).numpy()
            np.testing.assert_allclose(got1, _np(theirs(x[0], training=False)), rtol=1e-5,
                                       atol=1e-4 * max(vr))
            if name not in TRAINED:
                with pytest.raises(NotImplementedError, match="not implemented"):
                    ours(torch.from_numpy(x), training=True)
                continue
            for trial in range(3):
                t = theirs.get_random_transformation(keras.ops.convert_to_tensor(x),
                                                     training=True)
                want = _np(theirs.transform_images(keras.ops.convert_to_tensor(x), t,
                                                   training=True))
                tt = ({k: _np(v) for k, v in t.items()} if isinstance(t, dict)
                      else ({} if t is None else {"should_apply": _np(t)}))
                got = ours.transform_images(torch.from_numpy(x), tt).numpy()
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * max(vr),
                                           err_msg=f"{name}({kwargs}, {fmt}) training")


@pytest.fixture
def keras_clahe_as_tensorflow(monkeypatch):
    """Keras 3's torch backend with float one-hot histograms and numpy's symmetric
    padding, as its TensorFlow and JAX backends compute CLAHE."""
    from keras.src.backend.torch import nn as knn, numpy as knp
    one_hot, pad = knn.one_hot, knp.pad

    def float_one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
        return one_hot(x, num_classes, axis=axis, dtype=dtype or "float32", sparse=sparse)

    def symmetric_pad(x, pad_width, mode="constant", constant_values=None):
        if mode != "symmetric":
            return pad(x, pad_width, mode=mode, constant_values=constant_values)
        return torch.from_numpy(np.pad(x.cpu().numpy(), pad_width, mode="symmetric"))

    monkeypatch.setattr(knn, "one_hot", float_one_hot)
    monkeypatch.setattr(knp, "pad", symmetric_pad)


def test_clahe_is_tensorflow_backends_numbers(keras_clahe_as_tensorflow):
    rng = np.random.default_rng(5)
    for kwargs, shape in (({}, (2, 9, 13, 3)), ({"clip_limit": 2.0, "tile_grid_size": (4, 2)},
                                                (1, 7, 5, 1)),
                          ({"tile_grid_size": (3, 5), "value_range": (0, 1)}, (2, 16, 16, 2)),
                          ({"clip_limit": 1.5, "tile_grid_size": (20, 2)}, (1, 6, 6, 3))):
        theirs = keras.layers.ContrastLimitedAdaptiveHistogramEqualization(**kwargs)
        ours = _ours_from_keras(theirs).eval()
        x = _images(rng, shape, sorted(kwargs.get("value_range", (0, 255))))
        want = _np(theirs(x, training=False))
        got = ours(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=str(kwargs))


def test_symmetric_padding_is_numpys():
    from sepconv.layers.augmentation3 import _symmetric_index
    for n in (1, 2, 3, 7):
        for total in (n, n + 1, 2 * n + 3, 5 * n):
            a = np.arange(n)
            np.testing.assert_array_equal(a[_symmetric_index(n, total).numpy()],
                                          np.pad(a, (0, total - n), mode="symmetric"))
