"""The README's Python examples run as written.

Each fenced ``python`` block of README.md runs in a fresh namespace in a temporary
directory, after a setup that gives it what its prose assumes: the model files it loads
(written by sepconv itself, so no Keras is needed), the tensors and streams it names
(``x``, ``chunks``, ``microphone``, ``ids``, ...).  A block added to the README without a
setup here runs with none; one that names something undefined fails, so the README cannot
drift from the library.
"""

from __future__ import annotations

import os
import re
import textwrap
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

import sepconv

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "README.md")


def _blocks() -> List[Tuple[int, str]]:
    """``(line, code)`` of every fenced python block."""
    with open(README, encoding="utf8") as f:
        text = f.read()
    out = []
    for m in re.finditer(r"^( *)```python\n(.*?)^\1```", text, flags=re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(2))))
    return out


def _causal_file(path: str, channels: int, outputs: int = 4) -> None:
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(8, 3, padding="causal", activation="relu",
                                input_shape=(None, channels)),
        sepconv.Conv1D(outputs, 2, padding="causal", dilation_rate=2)).eval()
    model(torch.zeros(1, 4, channels))  # builds the second layer
    sepconv.save_keras_model(model, path)


def _text_file(path: str) -> None:
    model = sepconv.Sequential(
        sepconv.Embedding(50, 8, mask_zero=True, input_shape=(None,)),
        sepconv.Bidirectional(sepconv.LSTM(4, return_sequences=True)),
        sepconv.GlobalAveragePooling1D(), sepconv.Dense(1, activation="sigmoid")).eval()
    model(torch.ones(1, 3, dtype=torch.long))
    sepconv.save_keras_model(model, path, input_shape=(None,))


def _func_setup(ns: Dict) -> None:
    model = torch.nn.Sequential(
        sepconv.SeparableConv1D(4, 3, padding="causal", input_shape=(None, 3))).eval()
    x = torch.randn(2, 10, 3)
    params = dict(model.named_parameters())

    def loss(p, x):
        return torch.func.functional_call(model, p, (x,)).square().mean()

    stacked = {k: torch.stack([v.detach(), v.detach() + 1]) for k, v in params.items()}
    ns.update(model=model, x=x, loss=loss, stacked=stacked)


def _custom_file(path: str) -> None:
    """A Keras model holding a custom ``TransformerBlock`` with the README's attributes."""
    tf_keras = pytest.importorskip("tf_keras")
    L = tf_keras.layers

    class TransformerBlock(L.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kw):
            super().__init__(**kw)
            self.args = dict(embed_dim=embed_dim, num_heads=num_heads, ff_dim=ff_dim,
                             rate=rate)
            self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = tf_keras.Sequential([L.Dense(ff_dim, activation="relu"),
                                            L.Dense(embed_dim)])
            self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = L.LayerNormalization(epsilon=1e-6)

        def call(self, x):
            x = self.layernorm1(x + self.att(x, x))
            return self.layernorm2(x + self.ffn(x))

        def get_config(self):
            return {**super().get_config(), **self.args}

    tf_keras.saving.register_keras_serializable("Readme")(TransformerBlock)
    x = L.Input((6, 8))
    tf_keras.Model(x, TransformerBlock(8, 2, 16)(x)).save(path)


def _text_classifier(path: str) -> None:
    """A tf-keras text classifier that starts with an adapted TextVectorization."""
    tf_keras = pytest.importorskip("tf_keras")
    L = tf_keras.layers
    tv = L.TextVectorization(max_tokens=50, output_sequence_length=6)
    tv.adapt(["a great film", "a bad film", "great acting"])
    x = L.Input((1,), dtype="string")
    h = L.GlobalAveragePooling1D()(L.Embedding(50, 4)(tv(x)))
    tf_keras.Model(x, L.Dense(1, activation="sigmoid")(h)).save(path)


def _lambda_file(path: str) -> None:
    """A tf-keras .h5 whose Lambda ``"mean_over_time"`` holds its function as tf-keras
    stores one (``[base64 of the marshalled code, defaults, closure]``), written by
    sepconv (no Keras needed): ``lambda t: K.mean(t, axis=1)``."""
    import base64
    import marshal
    code = eval("lambda t: K.mean(t, axis=1)", {}).__code__  # noqa: S307 - a literal
    lam = sepconv.Lambda(lambda t: t.mean(dim=1), name="mean_over_time")
    lam.file_config = {"function": [base64.b64encode(marshal.dumps(code)).decode("ascii"),
                                    None, None],
                       "function_type": "lambda", "module": "__main__", "output_shape": None,
                       "output_shape_type": "raw", "output_shape_module": None,
                       "arguments": {}}
    lam.file_flavour = "tf_keras"
    sepconv.save_keras_model(torch.nn.Sequential(
        sepconv.Conv1D(8, 3, input_shape=(None, 16)), lam, sepconv.Dense(2)), path)


def _compiled_file(path: str) -> None:
    """A model file with tf-keras' ``training_config`` (what ``compile`` stores)."""
    import json

    import h5py
    sepconv.save_keras_model(torch.nn.Sequential(
        sepconv.Dense(8, activation="relu", input_shape=(4,)),
        sepconv.Dense(3, activation="softmax")), path)
    with h5py.File(path, "a") as f:
        f.attrs["training_config"] = json.dumps({
            "loss": "categorical_crossentropy", "metrics": None, "loss_weights": None,
            "optimizer_config": {"class_name": "Custom>Adam", "config": {
                "name": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                "epsilon": 1e-07, "amsgrad": False, "is_legacy_optimizer": False}}})


def _compiled_keras3_file(path: str) -> None:
    """A Keras 3 .keras file compiled with Adam and fitted 2 steps (its optimizer
    variables saved)."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.fit(np.ones((8, 4), np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0] * 2],
              batch_size=4, verbose=0)
    model.save(path)


#: What a block needs before it runs, by a piece of its text.
SETUPS: Dict[str, Callable[[Dict], None]] = {
    'load_keras_model("model.h5")': lambda ns: _causal_file("model.h5", 16),
    "for chunk in chunks": lambda ns: ns.update(
        chunks=[torch.randn(2, n, 16) for n in (1, 5, 0, 7)]),
    'load_keras_model("wavenet.h5")': lambda ns: (
        _causal_file("wavenet.h5", 3), ns.update(chunk=torch.randn(1, 6, 3))),
    "for frames in microphone": lambda ns: ns.update(
        microphone=[torch.randn(1, n, 40) for n in (3, 1, 4)]),
    "torch.compile(model, fullgraph=True)": _func_setup,
    "torch.export.export(model": lambda ns: ns.update(
        model=torch.nn.Sequential(sepconv.SeparableConv1D(
            4, 3, padding="causal", input_shape=(None, 3))).eval(),
        x=torch.randn(2, 10, 3)),
    'load_keras_model("ecg_cnn_bilstm.h5")': lambda ns: _causal_file("ecg_cnn_bilstm.h5",
                                                                       12),
    'load_keras_model("transformer.h5")': lambda ns: (
        _causal_file("transformer.h5", 16), ns.update(x=torch.randn(2, 7, 16))),
    'load_keras_model("text_bilstm.h5")': lambda ns: (
        _text_file("text_bilstm.h5"),
        ns.update(ids=torch.tensor([[3, 4, 0], [5, 0, 0]]), x=torch.randn(2, 3, 5))),
    "from_keras(keras_layer)": lambda ns: ns.update(
        tf_keras=pytest.importorskip("tf_keras"),
        keras_layer=pytest.importorskip("tf_keras").layers.SeparableConv1D(
            4, 3, input_shape=(None, 2))),
    "x = torch.randn(2, 16, 16, 3)": lambda ns: None,  # defines its own
    "sepconv.GroupQueryAttention(head_dim=64": lambda ns: ns.update(x=torch.randn(2, 12, 32)),
    "h, (h, c) = cell(x_t, [h, c])": lambda ns: ns.update(
        x_t=torch.randn(2, 5), h=torch.zeros(2, 32), c=torch.zeros(2, 32),
        x=torch.randn(2, 7, 5), ids=torch.tensor([[1, 2, 3, 0, 0, 0, 0],
                                                  [4, 5, 6, 7, 8, 9, 1]])),
    "sepconv.adapt(tv, texts)": lambda ns: (
        _text_classifier("text_classifier.keras"),
        ns.update(texts=["the cat sat", "the dog ran!", "a cat and a dog"])),
    '"transformer_classifier.keras"': lambda ns: _custom_file("transformer_classifier.keras"),
    '"lambda_model.h5"': lambda ns: (_lambda_file("lambda_model.h5"),
                                     ns.update(x=torch.randn(4, 20, 16))),
    "tf_keras.applications": lambda ns: pytest.importorskip("tf_keras"),  # builds one
    '"compiled.h5"': lambda ns: _compiled_file("compiled.h5"),
    '"compiled3.keras"': lambda ns: _compiled_keras3_file("compiled3.keras"),
}

BLOCKS = _blocks()


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_example_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: Dict = {"sepconv": sepconv, "torch": torch, "np": np}
    for piece, setup in SETUPS.items():
        if piece in code:
            setup(ns)
    if "torch.onnx.export" in code:
        pytest.importorskip("onnxscript")
    if "torch.compile" in code and not hasattr(torch, "compile"):
        pytest.skip("torch.compile is missing")
    torch.manual_seed(0)
    exec(compile(code, f"README.md:{line}", "exec"), ns)  # noqa: S102 - the README's code


@pytest.mark.parametrize("script", sorted(
    f for f in os.listdir(os.path.join(os.path.dirname(README), "examples"))
    if f.endswith(".py")))
def test_examples_run(script, tmp_path):
    """Each script of ``examples/`` runs to the end as the README says to run it."""
    import subprocess
    import sys
    pytest.importorskip("sktime")  # the bundled data sets come with the train extra
    path = os.path.join(os.path.dirname(README), "examples", script)
    proc = subprocess.run([sys.executable, path], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
