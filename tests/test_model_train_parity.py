"""Training a loaded model gives tf-keras' training: the models of bench/model_train.py
(separable, depthwise, dilated causal, embedding and LSTM networks with batch norms), built
in tf-keras, saved as .h5, loaded by sepconv, then trained side by side with SGD on the same
batches: every step's loss and the final weights (moving statistics included) agree to
float32 rounding.  This is what the bench's "first losses agree" column promises.  (SGD, not
the bench's Adam: Adam moves every weight by about its learning rate whatever the gradient's
size, so a gradient that is zero up to rounding moves a weight by 1e-3 either way.)"""

import importlib.util
import os

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "model_train.py")
_spec = importlib.util.spec_from_file_location("model_train", _PATH)
model_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_train)

STEPS = 4
#: SGD's learning rate per model (0.1 otherwise): the TCN's loss climbs at 0.1 (1.8 -> 4.2 in
#: four steps), where a rounding difference grows by ~300x a step in either library
LR = {"tcn": 0.01}
#: The final weights' tolerance per model, relative to each weight's scale (2e-4 otherwise):
#: the TCN's 16000-row sums (8 x 2000 steps, LayerNorm's statistics over 64 channels) leave
#: 7.5e-4 of a 64-element weight's scale between the libraries after four steps, with
#: sepconv's reference kernels as with its fast paths (SEPCONV_KERNEL=reference: the same)
WEIGHT_RTOL = {"tcn": 1e-3}


def _small_batches(name):
    """bench batches cut to 4 examples."""
    return [(x[:4], y[:4]) for x, y in model_train.batches(name, count=STEPS)]


@pytest.mark.parametrize("name", sorted(model_train.MODELS))
def test_training_follows_tf_keras(name, tmp_path):
    tf_keras.utils.set_random_seed(0)
    model = model_train.build_tf_model(name, tf_keras)
    path = str(tmp_path / f"{name}.h5")
    model.save(path)
    data = _small_batches(name)
    opt = tf_keras.optimizers.SGD(LR.get(name, 0.1))
    want = []
    for x, y in data:
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(y, p))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        want.append(float(loss))

    ours = sepconv.load_keras_model(path).train()
    topt = torch.optim.SGD(ours.parameters(), lr=LR.get(name, 0.1))
    got = []
    for x, y in data:
        p = ours(torch.from_numpy(x))
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)),
                                            torch.from_numpy(y))
        loss.backward()
        topt.step()
        topt.zero_grad(set_to_none=True)
        got.append(float(loss))
    np.testing.assert_allclose(got, want, rtol=2e-4)
    # the weights after the steps, in Keras' order (moving mean / variance included)
    theirs = model.get_weights()
    mine = [w for layer in ours.modules() if hasattr(layer, "get_weights")
            and not list(layer.children()) for w in layer.get_weights()]
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        scale = float(np.abs(b).max()) or 1.0
        # (a bias before a batch norm has a zero gradient up to rounding: an absolute floor)
        assert float(np.abs(a - b).max()) <= WEIGHT_RTOL.get(name, 2e-4) * scale + 1e-6
