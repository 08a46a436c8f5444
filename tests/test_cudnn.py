"""tf-keras' CuDNNLSTM / CuDNNGRU on any device, against tf-keras itself.

tf-keras runs these layers on cuDNN only, so the reference is tf-keras' own conversion of
their weights: a model file holding them, loaded with ``load_weights`` into the same model
built with ``LSTM`` / ``GRU(reset_after=True)`` (tf-keras converts the cuDNN biases
itself, ``hdf5_format._convert_rnn_weights``), predicts what sepconv computes from the
file.  Configs, signatures and initial biases come from tf-keras' CuDNN classes.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU  # noqa: E402
from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM  # noqa: E402
from tf_keras_compare import check_signature, strip_config  # noqa: E402

L = tf_keras.layers


def _models(cudnn: bool):
    """The same functional model with CuDNN layers or their tf-keras equivalents."""
    lstm = CuDNNLSTM if cudnn else (lambda u, **k: L.LSTM(u, **k))
    gru = CuDNNGRU if cudnn else (lambda u, **k: L.GRU(u, reset_after=True, **k))
    x = L.Input((9, 3), name="x")
    h = L.Conv1D(4, 3, padding="causal", name="conv")(x)
    h = L.Bidirectional(lstm(5, return_sequences=True, name="lstm"), name="bi")(h)
    h2 = gru(4, return_sequences=True, go_backwards=True, name="gru")(h)
    out, state_h, state_c = lstm(3, return_state=True, name="last")(h2)
    return tf_keras.Model(x, [out, state_h, state_c, h2], name="cudnn")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cudnn")
    tf_keras.utils.set_random_seed(11)
    model = _models(cudnn=True)
    rng = np.random.default_rng(0)
    # weights of every size, biases included (fresh ones would be zeros and ones)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    path = str(root / "cudnn.h5")
    model.save(path)
    twin = _models(cudnn=False)
    twin.load_weights(path)  # tf-keras converts the cuDNN weights
    x = rng.standard_normal((4, 9, 3)).astype("float32")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = tf.add_n([tf.reduce_sum(o * (i + 1.0)) for i, o in enumerate(twin(xt))])
    grad = tape.gradient(total, xt).numpy()
    return dict(path=path, x=x, y=twin.predict(x, verbose=0), grad=grad, root=root)


def test_a_cudnn_model_file_runs_as_tf_keras_converts_it(files):
    model = sepconv.load_keras_model(files["path"])
    assert type(model.last).__name__ == "CuDNNLSTM"
    assert type(model.bi.forward_layer).__name__ == "CuDNNLSTM"
    with torch.no_grad():
        got = model(torch.from_numpy(files["x"]))
    for g, e in zip(got, files["y"]):
        np.testing.assert_allclose(g.numpy(), e, rtol=0, atol=2e-6)
    x = torch.from_numpy(files["x"]).requires_grad_()
    total = sum((o * (i + 1.0)).sum() for i, o in enumerate(model(x)))
    total.backward()
    np.testing.assert_allclose(x.grad.numpy(), files["grad"], rtol=0, atol=1e-5)


def test_written_back_to_h5_tf_keras_reads_the_same_layers(files, tmp_path):
    model = sepconv.load_keras_model(files["path"])
    sepconv.save_keras_model(model, tmp_path / "back.h5")
    import h5py
    import json
    with h5py.File(tmp_path / "back.h5", "r") as f:
        config = json.loads(f.attrs["model_config"])
        names = [n.decode() for n in f["model_weights/last"].attrs["weight_names"]]
    classes = [e["class_name"] for e in config["config"]["layers"]]
    assert classes.count("CuDNNLSTM") == 1 and "CuDNNGRU" in classes
    assert names == ["last/kernel:0", "last/recurrent_kernel:0", "last/bias:0"]
    twin = _models(cudnn=False)
    twin.load_weights(str(tmp_path / "back.h5"))
    for g, e in zip(twin.predict(files["x"], verbose=0), files["y"]):
        np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match="Keras 3 has no CuDNN"):
        sepconv.save_keras_model(model, tmp_path / "back.keras")


@pytest.mark.parametrize("ours,theirs,r", [
    (sepconv.CuDNNLSTM, CuDNNLSTM, sepconv.layer_cudnn_lstm),
    (sepconv.CuDNNGRU, CuDNNGRU, sepconv.layer_cudnn_gru)])
def test_signature_config_and_initial_weights_are_tf_keras(ours, theirs, r):
    check_signature(ours, theirs, r, required=1)
    # a constant other than 1: CuDNNLSTM's forget ones must sit in its recurrent half
    kw = dict(units=3, return_sequences=True, go_backwards=True, stateful=False,
              bias_initializer={"class_name": "Constant", "config": {"value": 0.5}},
              kernel_regularizer="l2")
    ref = theirs(**kw, input_shape=(4, 2))
    ref.build((None, 4, 2))
    layer = ours(**kw, input_shape=(4, 2))
    assert strip_config(layer.get_config()) == strip_config(ref.get_config())
    assert [w.shape for w in layer.get_weights()] == [w.shape for w in ref.get_weights()]
    np.testing.assert_array_equal(layer.get_weights()[2], ref.get_weights()[2])
    again = ours.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_masks_are_refused_as_in_tf_keras():
    layer = sepconv.CuDNNLSTM(2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="Masking is not supported for CuDNN RNNs"):
        layer(x, mask=torch.ones(2, 3, dtype=torch.bool))


def test_cudnn_layers_stream(files):
    """A causal stack with CuDNN layers streams as LSTM / GRU do."""
    model = torch.nn.Sequential(
        sepconv.Conv1D(4, 3, padding="causal", input_shape=(None, 3)),
        sepconv.CuDNNLSTM(5, return_sequences=True), sepconv.CuDNNGRU(3)).eval()
    x = torch.randn(2, 11, 3)
    stream = sepconv.stream(model)
    with torch.no_grad():
        outs = [stream(x[:, a:b]) for a, b in ((0, 4), (4, 5), (5, 11))]
        torch.testing.assert_close(outs[-1], model(x), rtol=1e-5, atol=1e-6)
