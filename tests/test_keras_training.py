"""sepconv.load_keras_training: a tf-keras model compiled with each loss and optimizer,
fitted 2 steps and saved (.h5 and .keras, with the optimizer's state), then fitted 3 more
steps by tf-keras and by sepconv from the file: the weights agree.  The same with Keras
3.15 on its torch backend (as conftest sets it; on TensorFlow in
test_keras3_tensorflow.py).  One build per case and Keras, all in the module's fixtures."""

import os
import warnings

import numpy as np
import pytest
import torch

import sepconv

tf = pytest.importorskip("tensorflow")
K = tf_keras = pytest.importorskip("tf_keras")

BATCH, FEATURES, CLASSES = 16, 6, 4


def _cases(K):
    O, L = K.optimizers, K.losses
    return {  # name -> (output activation, target kind, loss, optimizer)
        "cce_adam": ("softmax", "onehot", "categorical_crossentropy",
                     O.Adam(0.01, amsgrad=True, clipnorm=1.0)),
        "cce_smooth_sgd": ("softmax", "onehot", L.CategoricalCrossentropy(label_smoothing=0.1),
                           O.SGD(0.05, momentum=0.9, nesterov=True)),
        "sparse_rmsprop": ("softmax", "sparse", "sparse_categorical_crossentropy",
                           O.RMSprop(0.01, momentum=0.5, centered=True)),
        "logits_adamw": (None, "sparse", L.SparseCategoricalCrossentropy(from_logits=True),
                         O.AdamW(0.01, weight_decay=0.01)),
        "bce_nadam": ("sigmoid", "binary", "binary_crossentropy", O.Nadam(0.01)),
        "mse_adagrad": (None, "real", "mse", O.Adagrad(0.05)),
        # (Keras 3.15's Huber.get_config drops `delta`: its files hold Huber(delta=1))
        "huber_adamax": (None, "real", L.Huber(delta=0.5) if K is tf_keras else L.Huber(),
                         O.Adamax(0.02, global_clipnorm=1.0)),
        "mae_sgd_decay": (None, "real", "mae", O.SGD(
            O.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5))),
    }


def _model(K, activation):
    L = K.layers
    return K.Sequential([
        K.Input((FEATURES,)),
        L.Dense(8, activation="relu", kernel_regularizer=K.regularizers.l2(1e-2)),
        L.BatchNormalization(),
        L.Dense(CLASSES, activation=activation)])


def _targets(kind, rng):
    classes = rng.integers(0, CLASSES, BATCH)
    return {"onehot": np.eye(CLASSES, dtype=np.float32)[classes],
            "sparse": classes.astype(np.int64),
            "binary": rng.integers(0, 2, (BATCH, CLASSES)).astype(np.float32),
            "real": rng.standard_normal((BATCH, CLASSES)).astype(np.float32)}[kind]


def _fitted(K, root, formats):
    """Each case compiled, fitted 2 steps, saved in ``formats``, fitted 3 more."""
    out = {}
    for name, (activation, kind, loss, opt) in _cases(K).items():
        K.utils.set_random_seed(3)
        rng = np.random.default_rng(len(name))
        model = _model(K, activation)
        x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
        y = _targets(kind, rng)
        model.compile(optimizer=opt, loss=loss, metrics=["accuracy"], run_eagerly=True)
        model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
        files = {}
        for fmt in formats:
            files[fmt] = os.path.join(root, name + fmt)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.save(files[fmt])
        hist = model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
        out[name] = dict(files=files, x=x, y=y, losses=hist.history["loss"],
                         weights=model.get_weights())
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _fitted(K, tmp_path_factory.mktemp("compiled"), (".h5", ".keras"))


@pytest.fixture(scope="module")
def reference_keras3(tmp_path_factory):
    keras = pytest.importorskip("keras")
    return _fitted(keras, tmp_path_factory.mktemp("compiled3"), (".keras", ".h5"))


def _failures(reference, maker, fmt):
    """Each case's ``fmt`` file resumed by ours (in ``maker``'s flavour) for 3 steps,
    against ``reference`` (what :func:`_fitted` gives)."""
    failures = []
    for name, r in reference.items():
        path = r["files"][fmt]
        model = sepconv.load_keras_model(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the optimizer's state must load
            training = sepconv.load_keras_training(path, model)
        assert training.optimizer.iterations == 2, name
        assert training.optimizer.flavour == maker, name
        x, y = torch.from_numpy(r["x"]), torch.from_numpy(r["y"])
        losses = [training.train_step(x, y) for _ in range(3)]
        got = [w for layer in model.children() for w in layer.get_weights()]
        err = max(float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))
                  for a, b in zip(got, r["weights"]))
        loss_err = float(np.max(np.abs(np.subtract(losses, r["losses"]))
                                / np.abs(r["losses"])))
        if len(got) != len(r["weights"]) or err > 1e-5 or loss_err > 1e-5:
            failures.append(f"{name}: weights off by {err:.3g}, losses by {loss_err:.3g}")
    return failures


@pytest.mark.parametrize("maker, fmt", [("tf_keras", ".h5"), ("tf_keras", ".keras"),
                                        ("keras3", ".h5"), ("keras3", ".keras")])
def test_training_from_the_file_follows_fit(request, maker, fmt, torch_single_thread):
    reference = request.getfixturevalue("reference" if maker == "tf_keras"
                                        else "reference_keras3")
    failures = _failures(reference, maker, fmt)
    assert not failures, "\n".join(failures)


def test_compile_settings_are_read(reference):
    path = reference["cce_smooth_sgd"]["files"][".h5"]
    model = sepconv.load_keras_model(path)
    training = sepconv.load_keras_training(path, model, optimizer_state=False)
    assert isinstance(training.loss, sepconv.losses.CategoricalCrossentropy)
    assert training.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert isinstance(training.optimizer, sepconv.optimizers.SGD)
    assert training.optimizer.param_groups[0]["nesterov"] is True
    assert training.optimizer.iterations == 0  # (the state not asked for)
    assert training.metrics is not None


def test_uncompiled_file_is_refused(tmp_path):
    model = K.Sequential([K.layers.Dense(2, input_shape=(3,))])
    path = str(tmp_path / "plain.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    with pytest.raises(ValueError, match="saved without compile"):
        sepconv.load_keras_training(path, sepconv.load_keras_model(path))


def test_keras3_file_gives_loss_and_its_optimizer_state(tmp_path):
    """The learning rate a callback set, the step count and each weight's slots."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    opt = keras.optimizers.RMSprop(0.01, momentum=0.5)
    model.compile(optimizer=opt, loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]],
              verbose=0)
    opt.learning_rate = 0.003
    path = str(tmp_path / "k3.keras")
    model.save(path)
    ours = sepconv.load_keras_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        training = sepconv.load_keras_training(path, ours)
    assert isinstance(training.loss, sepconv.losses.CategoricalCrossentropy)
    optimizer = training.optimizer
    assert isinstance(optimizer, sepconv.optimizers.RMSprop) and optimizer.flavour == "keras3"
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert optimizer.iterations == 1
    assert optimizer.learning_rate == pytest.approx(0.003)
    kernel = next(p for p in ours.parameters() if p.dim() == 2)
    for key, slot in (("velocity", opt._velocities[0]), ("momentum", opt._momentums[0])):
        np.testing.assert_array_equal(optimizer.state[kernel][key].numpy(),
                                      keras.ops.convert_to_numpy(slot.value))


def test_two_outputs_with_loss_weights_follow_fit(tmp_path, torch_single_thread):
    """A functional model's losses by output name, weighted as compile's loss_weights."""
    K.utils.set_random_seed(4)
    L = K.layers
    inp = K.Input((FEATURES,))
    h = L.Dense(8, activation="tanh")(inp)
    a = L.Dense(2, name="a")(h)
    b = L.Dense(3, activation="softmax", name="b")(h)
    model = K.Model(inp, [a, b])
    model.compile(optimizer=K.optimizers.SGD(0.1, momentum=0.5),
                  loss={"a": "mse", "b": "categorical_crossentropy"},
                  loss_weights={"a": 0.5, "b": 2.0}, run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, FEATURES)).astype(np.float32)
    ya = rng.standard_normal((BATCH, 2)).astype(np.float32)
    yb = np.eye(3, dtype=np.float32)[rng.integers(0, 3, BATCH)]
    model.fit(x, [ya, yb], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "two.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    hist = model.fit(x, [ya, yb], batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    ours = sepconv.load_keras_model(path)
    training = sepconv.load_keras_training(path, ours)
    assert training.loss_weights == {"a": 0.5, "b": 2.0}
    losses = [training.train_step(torch.from_numpy(x), [torch.from_numpy(ya),
                                                        torch.from_numpy(yb)])
              for _ in range(2)]
    np.testing.assert_allclose(losses, hist.history["loss"], rtol=1e-6)
    back = K.models.load_model(path, compile=False)  # ours written back, as tf-keras reads it
    sepconv.save_keras_model(ours, str(tmp_path / "ours.h5"))
    back.load_weights(str(tmp_path / "ours.h5"))
    for got, want in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
