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
    "AugMix": [{}, {"num_chains": 2, "chain_depth": 1, "factor": 0.5, "all_ops": False},
               {"num_chains": 4, "chain_depth": 1, "factor": (0.1, 0.2), "alpha": 0.5,
                "value_range": (0, 1), "interpolation": "nearest"}],
    "CutMix": [{}, {"factor": 0.5, "seed": 1}],
    "MixUp": [{}, {"alpha": 0.5}],
    # (longer chains: test_rand_augment_every_pair_of_ops_is_keras3)
    "RandAugment": [{}, {"num_ops": 3, "factor": (0.1, 0.4), "interpolation": "nearest"}],
    "RandomColorJitter": [{}, {"brightness_factor": 0.2, "contrast_factor": (0.1, 0.3),
                               "saturation_factor": 0.4, "hue_factor": 0.2}],
    "RandomElasticTransform": [{}, {"factor": 0.5, "scale": (0.2, 0.4), "fill_mode": "wrap"}],
    "RandomErasing": [{}, {"factor": 0.5, "scale": 0.3, "fill_value": 1.0},
                      {"fill_value": [0.5, 0.2, 0.9], "value_range": (0, 1)}],
    "RandomGaussianBlur": [{}, {"kernel_size": 5, "sigma": (0.2, 0.8), "factor": 0.7}],
    "RandomPerspective": [{}, {"factor": 0.5, "scale": 0.5, "interpolation": "nearest"},
                          {"scale": 0.3, "fill_value": 5.0}],
    # ("wrap": Keras' torch backend wraps otherwise than TensorFlow: not compared)
    "RandomShear": [{}, {"x_factor": 0.3, "y_factor": (0.1, 0.2), "fill_mode": "constant",
                         "fill_value": 9.0},
                    {"x_factor": (0.2, 0.5), "fill_mode": "nearest",
                     "interpolation": "nearest"},
                    {"y_factor": 0.6, "fill_mode": "reflect"}],
}
#: The layers whose training transform sepconv implements (Keras' numbers, given Keras'
#: transformation), the others refuse training.
TRAINED = ["AutoContrast", "Equalization", "Solarization", "RandomGrayscale", "RandomInvert",
           "RandomColorDegeneration", "RandomPosterization", "RandomSaturation", "RandomHue",
           "RandomSharpness", "ContrastLimitedAdaptiveHistogramEqualization",
           "MaxNumBoundingBoxes", "CutMix", "MixUp", "RandomErasing", "RandomGaussianBlur",
           "RandomShear", "RandomPerspective", "RandAugment", "AugMix"]
#: Trained, but Keras draws inside ``transform_images`` (its transformation fixes nothing):
#: test_color_jitter_with_collapsed_factors_is_keras3.
DRAWS_INSIDE = ["RandomColorJitter"]
REFUSED = sorted(set(CASES) - set(TRAINED) - set(DRAWS_INSIDE))
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


def _brightness_out_of_place(monkeypatch):
    """Keras 3.15's torch backend mutates its inputs twice where RandAugment notices.
    ``RandomBrightness.transform_images`` adds its delta in place
    (``images += rgb_delta``): on the torch backend ``RandAugment``, which calls every
    augmentation on the same tensor and keeps the chosen one, then brightens the images
    whichever augmentation was chosen (TensorFlow and JAX tensors are immutable).  The
    comparison patches in the out-of-place sum those backends compute."""
    from keras.src.layers.preprocessing.image_preprocessing import random_brightness as rb

    def transform_images(self, images, transformation, training=True):
        if training:
            images = images + self.backend.cast(transformation["rgb_delta"], images.dtype)
            return self.backend.numpy.clip(images, self.value_range[0],
                                           self.value_range[1])
        return images

    monkeypatch.setattr(rb.RandomBrightness, "transform_images", transform_images)
    # and its torch affine_transform swaps entries of the transform in place (RandAugment
    # calls the rotation's transform once per op: every other op it would rotate by the
    # swapped matrix); TensorFlow's does not
    from keras.src.backend.torch import image as kimage
    affine = kimage.affine_transform

    def affine_transform(images, transform, *args, **kwargs):
        return affine(images, transform.clone(), *args, **kwargs)

    monkeypatch.setattr(kimage, "affine_transform", affine_transform)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_inference_and_transform_match_keras3(name, monkeypatch):
    """For each argument set and both data formats: Keras' config back, inference equal,
    and (for the implemented ones) Keras' ``transform_images`` given its own random
    transformation."""
    if name in ("RandAugment", "AugMix"):
        _brightness_out_of_place(monkeypatch)
    keras.utils.set_random_seed(sorted(CASES).index(name))  # Keras' draws: repeatable
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
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 * max(vr),
                                       err_msg=f"{name}({kwargs}, {fmt}) inference")
            # one unbatched image too
            got1 = ours(torch.from_numpy(x[0])).numpy()
            np.testing.assert_allclose(got1, _np(theirs(x[0], training=False)), rtol=1e-5,
                                       atol=2e-5 * max(vr))
            if name in DRAWS_INSIDE or (name == "AugMix" and
                                        kwargs.get("chain_depth", 3) > 1):
                continue  # (deeper AugMix chains: test_aug_mix_deep_chains_are_keras3)
            if name not in TRAINED:
                with pytest.raises(NotImplementedError, match="not implemented"):
                    ours(torch.from_numpy(x), training=True)
                continue
            for trial in range(3):
                t = theirs.get_random_transformation(keras.ops.convert_to_tensor(x),
                                                     training=True)
                tt = (t if name in ("RandAugment", "AugMix")  # nested: Keras' tensors
                      else {k: _np(v) for k, v in t.items()} if isinstance(t, dict)
                      else ({} if t is None else {"should_apply": _np(t)}))
                try:
                    # (sepconv's first: Keras' torch affine_transform swaps entries of
                    # the transform it is given in place)
                    got = ours.transform_images(torch.from_numpy(x), tt).numpy()
                    want = _np(theirs.transform_images(keras.ops.convert_to_tensor(x), t,
                                                       training=True))
                except RuntimeError:  # Keras 3.15 fails (RandomErasing's 3-number
                    break  # fill_value on channels_first images): nothing to compare
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 * max(vr),
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


# -- training draws: Keras' distributions (torch's stream), checked by their ranges -------

def test_training_draws_stay_in_keras_ranges_and_repeat_with_a_seed():
    rng = np.random.default_rng(9)
    x = torch.from_numpy(_images(rng, (16, 6, 5, 3)))
    cases = [(sepconv.Solarization(addition_factor=(0.1, 0.2), threshold_factor=0.5, seed=1),
              lambda t: bool((t["additions"] >= 0.1).all() and (t["additions"] < 51).all()
                             and (t["thresholds"] >= 0).all()
                             and (t["thresholds"] < 127.5).all())),
             (sepconv.RandomPosterization(factor=(2, 5), seed=1),
              lambda t: set(t["shift_factor"].tolist()) <= {6, 5, 4}),
             (sepconv.RandomHue(factor=(0.2, 0.6), seed=1),
              lambda t: bool((t["factor"].abs() >= 0.1).all() and
                             (t["factor"].abs() <= 0.3).all())),
             (sepconv.RandomSharpness(factor=(0.1, 0.3), seed=1),
              lambda t: bool((t["factor"] >= 0.1).all() and (t["factor"] < 0.3).all())),
             (sepconv.RandomColorDegeneration(factor=(0.2, 0.4), seed=1),
              lambda t: bool((t["factor"] >= 0.2).all() and (t["factor"] < 0.4).all()))]
    for layer, ok in cases:
        t = layer.get_random_transformation(x)
        assert ok(t), (layer, t)
        y1 = type(layer).from_config(layer.get_config()).train()(x)
        again = type(layer).from_config(layer.get_config()).train()
        assert torch.equal(again(x), y1)  # the same seed, the same draws
        assert y1.shape == x.shape and float(y1.min()) >= 0.0 and float(y1.max()) <= 255.0
        assert torch.equal(layer.eval()(x), x)  # inference: the identity
    # mixing: convex combinations of two images of the batch / pixels of the batch
    mixed = sepconv.MixUp(alpha=0.5, seed=4).train()(x)
    lo = torch.minimum(x, x.amin(0, keepdim=True))
    assert bool((mixed >= lo - 1e-3).all() and (mixed <= x.amax(0) + 1e-3).all())
    cut = sepconv.CutMix(seed=4).train()(x)
    same_pixel = (cut[:, None] == x[None]).all(-1).any(1)
    assert bool(same_pixel.all()) and not torch.equal(cut, x)
    assert torch.equal(sepconv.CutMix().train()(x[0]), x[0])  # one image: nothing to mix
    erased = sepconv.RandomErasing(factor=(1.0, 1.0), scale=(0.25, 0.25), fill_value=7.0,
                                   seed=2).train()(x)
    assert bool(((erased == 7.0).all(-1).sum((1, 2)) >= 4).all())  # a 3 x 2.5 box
    assert torch.equal(sepconv.RandomGaussianBlur(factor=0.0).train()(x), x)
    with pytest.raises(NotImplementedError, match="square"):
        sepconv.RandomGaussianBlur(factor=1.0, kernel_size=(3, 5)).train()(x)
    mix = lambda: sepconv.AugMix(seed=6, chain_depth=2).train()  # noqa: E731
    am = mix()(x)
    assert am.shape == x.shape and torch.equal(mix()(x), am) and not torch.equal(am, x)
    for num_ops in (1, 4):  # RandAugment: its own draws, any chain of its eleven ops
        make = lambda: sepconv.RandAugment(  # noqa: E731
            num_ops=num_ops, factor=0.5, seed=5).train()
        ra = make()(x)
        assert ra.shape == x.shape and torch.equal(make()(x), ra)
        assert float(ra.min()) >= 0.0 and float(ra.max()) <= 255.0
    # probability 1 / 0: every image changed / none
    assert torch.equal(sepconv.RandomGrayscale(factor=0.0).train()(x), x)
    g = sepconv.RandomGrayscale(factor=1.0).train()(x)
    assert torch.equal(g[..., 0], g[..., 2])
    inv = sepconv.RandomInvert(factor=(1.0, 1.0)).train()(x)
    torch.testing.assert_close(inv, 255.0 - x)


def test_pipeline_applies_its_layers_in_order_as_keras():
    rng = np.random.default_rng(3)
    x = _images(rng)
    theirs = keras.layers.Pipeline([keras.layers.AutoContrast(),
                                    keras.layers.Rescaling(1 / 255.0),
                                    keras.layers.RandomInvert(value_range=(0, 1))])
    entry = keras.saving.serialize_keras_object(theirs)
    ours = build_layer(entry, "keras3").eval()
    assert [type(m).__name__ for m in ours.layers] == ["AutoContrast", "Rescaling",
                                                       "RandomInvert"]
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(),
                               _np(theirs(x, training=False)), rtol=1e-6, atol=1e-6)
    # training: Keras' RandomInvert with probability 1 inverts after the others
    theirs1 = keras.layers.Pipeline([keras.layers.AutoContrast(),
                                     keras.layers.RandomInvert(factor=(1.0, 1.0))])
    ours1 = build_layer(keras.saving.serialize_keras_object(theirs1), "keras3")
    np.testing.assert_allclose(ours1(torch.from_numpy(x), training=True).numpy(),
                               _np(theirs1(x, training=True)), rtol=1e-6, atol=1e-4)
    assert ours1.training and ours1(torch.from_numpy(x)).shape == x.shape
    with pytest.raises(ValueError, match="`layers`"):
        sepconv.Pipeline(layers=sepconv.AutoContrast())
    again = sepconv.Pipeline.from_config(ours.get_config())
    assert [type(m).__name__ for m in again.layers] == [type(m).__name__ for m in ours.layers]


def test_errors_name_the_argument():
    for make, arg in ((lambda: sepconv.RandomInvert(factor=2.0), "factor"),
                      (lambda: sepconv.RandomPosterization(factor=9), "factor"),
                      (lambda: sepconv.Solarization(addition_factor=1.5), "addition_factor"),
                      (lambda: sepconv.RandomGrayscale(factor=-0.1), "factor"),
                      (lambda: sepconv.Equalization(bins=0), "bins"),
                      (lambda: sepconv.AutoContrast(value_range=(0, 1, 2)), "value_range"),
                      (lambda: sepconv.RandomGaussianBlur(kernel_size=4), "kernel_size"),
                      (lambda: sepconv.RandomShear(fill_mode="mirror"), "fill_mode"),
                      (lambda: sepconv.ContrastLimitedAdaptiveHistogramEqualization(
                          tile_grid_size=(0, 2)), "tile_grid_size"),
                      (lambda: sepconv.AutoContrast(data_format="nchw"), "data_format"),
                      (lambda: sepconv.ReversibleEmbedding(5, 3, reverse_dtype="int32"),
                       "reverse_dtype"),
                      (lambda: sepconv.ReversibleEmbedding(5, 3, logit_soft_cap=0.0),
                       "logit_soft_cap"),
                      (lambda: sepconv.ReversibleEmbedding(5, 3, tie_weights="yes"),
                       "tie_weights")):
        with pytest.raises((ValueError, TypeError), match=f"`{arg}`"):
            make()
    with pytest.raises(ValueError, match="3 channels"):
        sepconv.RandomHue(0.5).train()(torch.zeros(1, 4, 4, 2))


def test_r_functions_coerce_whole_doubles():
    layer = sepconv.layer_equalization(bins=16.0, value_range=[0.0, 1.0])
    assert layer.bins == 16 and isinstance(layer.bins, int)
    clahe = sepconv.layer_contrast_limited_adaptive_histogram_equalization(
        tile_grid_size=[2.0, 4.0])
    assert clahe.tile_grid_size == (2, 4)
    emb = sepconv.layer_reversible_embedding(input_dim=10.0, output_dim=4.0,
                                             tie_weights=False)
    assert [w.shape for w in emb.get_weights()] == [(10, 4), (4, 10)]
    for name in NAMES:
        assert callable(getattr(sepconv, sepconv.r.r_name(name)))


# -- ReversibleEmbedding ---------------------------------------------------------------------

RE_CASES = [dict(), dict(tie_weights=False), dict(logit_soft_cap=2.0),
            dict(tie_weights=False, logit_soft_cap=0.5, mask_zero=True),
            dict(reverse_dtype="float32", dtype="mixed_float16"),
            dict(dtype="mixed_float16", logit_soft_cap=3.0), dict(dtype="mixed_bfloat16"),
            dict(reverse_dtype="float64")]


@pytest.mark.parametrize("kwargs", RE_CASES, ids=str)
def test_reversible_embedding_matches_keras3_forward_and_gradients(kwargs):
    rng = np.random.default_rng(1)
    theirs = keras.layers.ReversibleEmbedding(9, 6, **kwargs)
    theirs.build()
    weights = [(rng.normal(size=w.shape) * 0.7).astype(np.float32)
               for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours = _ours_from_keras(theirs)
    ours.set_weights(weights)
    mine, want = (_config_without_common(c) for c in (ours.get_config(),
                                                        theirs.get_config()))
    init = want.pop("embeddings_initializer")
    assert mine.pop("embeddings_initializer") == {k: init[k] for k in ("class_name",
                                                                       "config")}
    assert mine == want
    assert [tuple(w.shape) for w in ours.get_weights()] == [w.shape for w in weights]
    ids = rng.integers(0, 9, size=(3, 5))
    ids[0, -2:] = 0
    half = kwargs.get("dtype", "").startswith("mixed_")
    # (mixed: the embedding output is half precision, the logits float32 as in Keras)
    tol = dict(rtol=1e-3, atol=1e-3) if half else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours(torch.from_numpy(ids)).detach().float().numpy(),
                               _np(theirs(ids)).astype(np.float32), **tol)
    if kwargs.get("mask_zero"):
        np.testing.assert_array_equal(ours.compute_mask(torch.from_numpy(ids)).numpy(),
                                      ids != 0)
    # reverse, with gradients w.r.t. the hidden states and every weight
    h = rng.normal(size=(3, 5, 6)).astype(np.float32)
    probe = rng.normal(size=(3, 5, 9)).astype(np.float32)
    ht = torch.from_numpy(h).requires_grad_(True)
    kt = torch.from_numpy(h).requires_grad_(True)
    out_k = theirs(kt, reverse=True)
    out_o = ours(ht, reverse=True)
    if kwargs.get("reverse_dtype") == "float64":
        # Keras 3.15's matmul rounds float64 products to float32 (its result_type):
        # sepconv keeps the float64 that reverse_dtype asks for
        assert out_o.dtype == torch.float64 and out_k.dtype == torch.float32
    else:
        assert out_o.dtype == out_k.dtype, (out_o.dtype, out_k.dtype)
    assert ours.compute_mask(ht) is None
    np.testing.assert_allclose(out_o.detach().float().numpy(),
                               out_k.detach().float().numpy(), **tol)
    tvars = [v.value for v in theirs.trainable_weights]
    g_k = torch.autograd.grad((out_k.float() * torch.from_numpy(probe)).sum(), [kt] + tvars,
                              allow_unused=True)
    g_o = torch.autograd.grad((out_o.float() * torch.from_numpy(probe)).sum(),
                              [ht] + list(ours.weights), allow_unused=True)
    assert [g is None for g in g_o] == [g is None for g in g_k]
    assert g_o[-1] is not None  # the (tied or reverse) kernel gets a gradient
    for a, b in zip(g_o, g_k):
        if b is None:
            continue
        scale = max(1.0, float(b.abs().max()))
        np.testing.assert_allclose(a.float().numpy(), b.float().numpy(),
                                   rtol=tol["rtol"], atol=tol["atol"] * scale)
    assert ours.compute_output_shape((3, 5, 6), reverse=True) == (3, 5, 9)
    assert ours.compute_output_shape((3, 5)) == (3, 5, 6)


def test_reversible_embedding_gradcheck_float64():
    layer = sepconv.ReversibleEmbedding(7, 4, tie_weights=False, logit_soft_cap=1.5,
                                        dtype="float64")
    h = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, e, r: _re_reverse(layer, h, e, r),
                                    (h, layer.embeddings, layer.reverse_embeddings))
    tied = sepconv.ReversibleEmbedding(7, 4, dtype="float64", logit_soft_cap=3.0)
    assert torch.autograd.gradcheck(lambda h, e: _re_reverse(tied, h, e, None),
                                    (h, tied.embeddings))


def _re_reverse(layer, h, e, r):
    saved = {"embeddings": layer.embeddings}
    layer._parameters["embeddings"] = e
    if r is not None:
        saved["reverse_embeddings"] = layer.reverse_embeddings
        layer._parameters["reverse_embeddings"] = r
    try:
        return layer(h, reverse=True)
    finally:
        layer._parameters.update(saved)


# -- Keras 3 model files ----------------------------------------------------------------------

@pytest.mark.slow
def test_keras3_models_load_without_tensorflow(tmp_path):
    from keras_files import Cases, check, outputs
    cases = Cases(tmp_path)
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(2)
    inp = keras.Input((16, 16, 3))
    y = keras.layers.AutoContrast(name="ac")(inp)
    y = keras.layers.ContrastLimitedAdaptiveHistogramEqualization(
        clip_limit=0.0, tile_grid_size=(2, 2), name="clahe")(y)
    y = keras.layers.RandomShear(x_factor=0.2, name="shear")(y)
    y = keras.layers.Pipeline([keras.layers.RandomHue(0.3), keras.layers.Equalization(),
                               keras.layers.Rescaling(1 / 255.0)], name="pipe")(y)
    y = keras.layers.RandomGrayscale(name="gray")(y)
    y = keras.layers.Conv2D(4, 3, name="conv")(y)
    y = keras.layers.MixUp(name="mix")(y)
    images = keras.Model(inp, y)
    x = _images(rng, (2, 16, 16, 3))
    path = tmp_path / "images.keras"
    images.save(path)
    cases.add("images", "model", path, inputs=[x],
              expected=outputs(images.predict(x, verbose=0)))
    ids_in = keras.Input((7,), dtype="int32")
    emb = keras.layers.ReversibleEmbedding(12, 8, mask_zero=True, logit_soft_cap=4.0,
                                           tie_weights=False, name="emb")
    h = keras.layers.Dense(8, activation="tanh", name="dense")(emb(ids_in))
    text = keras.Model(ids_in, emb(h, reverse=True))
    text.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype)
                      for w in text.get_weights()])
    ids = rng.integers(0, 12, size=(3, 7)).astype(np.int32)
    path = tmp_path / "text.keras"
    text.save(path)
    cases.add("text", "model", path, inputs=[ids], expected=outputs(text.predict(ids,
                                                                                 verbose=0)))
    results = cases.run()
    check(results["images"], atol=1e-4)
    check(results["text"])
    ours = sepconv.load_keras_model(str(tmp_path / "text.keras"))
    assert type(ours.emb).__name__ == "ReversibleEmbedding"
    # written back: Keras 3 reads the node that calls it with reverse=True
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sepconv.save_keras_model(ours, str(tmp_path / "text_again.keras"))
        again = keras.saving.load_model(str(tmp_path / "text_again.keras"))
    np.testing.assert_allclose(_np(again.predict(ids, verbose=0)),
                               outputs(text.predict(ids, verbose=0))[0], rtol=1e-6,
                               atol=1e-6)


def test_save_keras_model_writes_them_for_keras3(tmp_path):
    """sepconv's layers written to ``.keras`` (a Pipeline's layers nested as Keras 3 nests
    them) load in Keras 3.15 and predict sepconv's numbers; ``.h5`` is refused."""
    import warnings
    model = torch.nn.Sequential(
        sepconv.AutoContrast(input_shape=(16, 16, 3)),
        sepconv.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=(2, 2),
                                                             clip_limit=0.0),
        sepconv.Pipeline([sepconv.RandomHue(0.3), sepconv.Solarization(0.2, 0.5)]),
        sepconv.MixUp(), sepconv.RandomShear(), sepconv.Conv2D(4, 3)).eval()
    x = torch.from_numpy(_images(np.random.default_rng(2), (2, 16, 16, 3)))
    with torch.no_grad():
        want = model(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sepconv.save_keras_model(model, str(tmp_path / "m.keras"))
        theirs = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert [type(layer).__name__ for layer in theirs.layers] == [
        "AutoContrast", "ContrastLimitedAdaptiveHistogramEqualization", "Pipeline", "MixUp",
        "RandomShear", "Conv2D"]
    np.testing.assert_allclose(_np(theirs.predict(x.numpy(), verbose=0)), want, rtol=1e-5,
                               atol=1e-4)
    with pytest.raises(ValueError, match="Keras 3 only"):
        sepconv.save_keras_model(model, str(tmp_path / "m.h5"))


@pytest.mark.parametrize("fmt", ["channels_last"])
def test_color_jitter_with_collapsed_factors_is_keras3(fmt):
    """Every factor collapsed to one value: Keras 3's training output, through sepconv's
    four sublayers (brightness, contrast, saturation, hue) in Keras' order."""
    rng = np.random.default_rng(12)
    for kwargs in ({"brightness_factor": (0.1, 0.1), "contrast_factor": (0.0, 0.0),
                    "saturation_factor": (0.6, 0.6), "hue_factor": (0.0, 0.0)},
                   {"brightness_factor": (-0.2, -0.2), "saturation_factor": (0.3, 0.3),
                    "value_range": (0, 1)}):
        theirs = keras.layers.RandomColorJitter(**kwargs, data_format=fmt)
        ours = _ours_from_keras(theirs).train()
        assert len(ours.jitters) == sum(v is not None for k, v in kwargs.items()
                                        if k.endswith("_factor"))
        x = _images(rng, value_range=kwargs.get("value_range", (0, 255)))
        want = _np(theirs(x, training=True))
        got = ours(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=str(kwargs))


def test_rand_augment_every_pair_of_ops_is_keras3(monkeypatch):
    """Each of the 121 ordered pairs of RandAugment's augmentations, given Keras' own
    transformation, for both value ranges and data formats.  (Longer chains agree too,
    but a discrete op late in a chain turns the last-bit differences of a geometric one
    before it into a level's difference now and then: posterization, equalization.)"""
    _brightness_out_of_place(monkeypatch)
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    for vr, fmt in (((0, 1), "channels_last"), ((0, 255), "channels_first")):
        theirs = keras.layers.RandAugment(num_ops=2, factor=0.4, value_range=vr,
                                          data_format=fmt)
        ours = _ours_from_keras(theirs)
        x = _images(rng, (2, 6, 7, 3), vr)
        if fmt == "channels_first":
            x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        t = theirs.get_random_transformation(keras.ops.convert_to_tensor(x), training=True)
        for i in range(11):
            for j in range(11):
                t["layer_idxes"] = torch.tensor([i, j])
                got = ours.transform_images(torch.from_numpy(x), t).numpy()
                want = _np(theirs.transform_images(keras.ops.convert_to_tensor(x), t))
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 * vr[1],
                                           err_msg=f"{ours._OPS[i]}, {ours._OPS[j]}")


def test_aug_mix_deep_chains_are_keras3(monkeypatch):
    """AugMix chains of several augmentations, given Keras' transformation: equal to Keras
    3 but where a discrete op (posterization, equalization, the uint8 / histogram steps)
    late in a chain turns a last-bit difference of a geometric op before it into a level's
    difference: at most 1% of the elements, each within the images' range."""
    _brightness_out_of_place(monkeypatch)
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    flipped, total = 0, 0
    for kwargs in ({}, {"num_chains": 2, "chain_depth": 4, "all_ops": False},
                   {"chain_depth": 2, "value_range": (0, 1), "data_format": "channels_first"}):
        theirs = keras.layers.AugMix(**kwargs)
        ours = _ours_from_keras(theirs)
        vr = kwargs.get("value_range", (0, 255))
        x = _images(rng, (3, 8, 9, 3), vr)
        if kwargs.get("data_format") == "channels_first":
            x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        for _ in range(4):
            t = theirs.get_random_transformation(keras.ops.convert_to_tensor(x),
                                                 training=True)
            got = ours.transform_images(torch.from_numpy(x), t).numpy()
            want = _np(theirs.transform_images(keras.ops.convert_to_tensor(x), t))
            close = np.isclose(got, want, rtol=1e-5, atol=2e-5 * vr[1])
            flipped, total = flipped + int((~close).sum()), total + close.size
            assert float(got.min()) >= vr[0] and float(got.max()) <= vr[1]
    assert flipped <= 0.01 * total, (flipped, total)
    print(f"AugMix deep chains: {flipped} of {total} elements differ")
