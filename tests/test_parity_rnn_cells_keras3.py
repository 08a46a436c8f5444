"""RNN and its cells against Keras 3.15 on its torch backend (conftest sets
``KERAS_BACKEND=torch``): outputs, states and gradients (input and every weight, both by
torch autograd) with masks, stacks, go_backwards and zero_output_for_mask; Keras 3
configs (``seed``, ``zero_output_for_mask``, dtype policies, nested cell entries) build
the same layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

from sepconv.interop.models import build_layer  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

L = keras.layers




@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("build", ["lstm", "stack", "gru_before"])
def test_outputs_states_and_gradients_match_keras3(build, go_backwards, zero_output_for_mask):
    rng = np.random.default_rng(1)
    cells = {"lstm": lambda: L.LSTMCell(3, dtype="float64"),
             "stack": lambda: L.StackedRNNCells([L.GRUCell(2, dtype="float64"),
                                                 L.LSTMCell(3, dtype="float64"),
                                                 L.SimpleRNNCell(2, dtype="float64")],
                                                dtype="float64"),
             "gru_before": lambda: L.GRUCell(3, reset_after=False, dtype="float64")}[build]
    ref = L.RNN(cells(), return_sequences=True, return_state=True, go_backwards=go_backwards,
                zero_output_for_mask=zero_output_for_mask, dtype="float64")
    ref.build((None, None, 4))
    ref.set_weights([w + 0.3 * rng.standard_normal(w.shape) for w in ref.get_weights()])
    entry = {"class_name": "RNN", "config": keras.saving.serialize_keras_object(ref)["config"]}
    ours = build_layer(entry, "keras3")
    assert ours.zero_output_for_mask == zero_output_for_mask
    ours.build((None, None, 4))
    ours.set_weights(ref.get_weights())
    x = torch.from_numpy(rng.standard_normal((3, 6, 4)))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1], [1] * 6], dtype=torch.bool)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a = ours(xa, mask=mask)
    a = [a[0]] + [t for s in a[1:] for t in (s if isinstance(s, (list, tuple)) else [s])]
    b = ref(xb, mask=mask)
    b = [b[0]] + [t for s in b[1:] for t in (s if isinstance(s, (list, tuple)) else [s])]
    assert len(a) == len(b)
    # (Keras 3's float64 RNN on torch differs from tf-keras' at ~1e-8: some of its work is
    # float32; sepconv matches tf-keras at 1e-9 in float64, see the tf-keras tests)
    probes = [torch.from_numpy(rng.standard_normal(tuple(t.shape))) for t in a]
    for u, v in zip(a, b):
        torch.testing.assert_close(u, torch.as_tensor(v), rtol=1e-6, atol=1e-6)
    ga = torch.autograd.grad(sum((u * p).sum() for u, p in zip(a, probes)),
                             [xa] + list(ours.weights))
    gb = torch.autograd.grad(sum((torch.as_tensor(v) * p).sum() for v, p in zip(b, probes)),
                             [xb] + [w.value for w in ref.trainable_weights])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-6)


def test_keras3_config_keys_and_bidirectional():
    ref = L.RNN(L.StackedRNNCells([L.LSTMCell(2, name="a"), L.GRUCell(3, name="b")],
                                  name="s"), return_sequences=True, name="k3r")
    config = ref.get_config()
    ours = build_layer({"class_name": "RNN", "config": config}, "keras3")
    mine = ours.get_config()
    assert set(config) - set(mine) == {"zero_output_for_mask"}  # written when True only
    assert set(mine) - set(config) == {"time_major"}  # tf-keras' key
    cells = [c["config"] for c in mine["cell"]["config"]["cells"]]
    theirs = [c["config"] for c in config["cell"]["config"]["cells"]]
    for a, b in zip(cells, theirs):
        # Keras 3 adds the seed of its dropout; tf-keras' implementation key
        assert set(b) - set(a) == {"seed"} and set(a) - set(b) == {"implementation"}
    bi = L.Bidirectional(L.RNN(L.GRUCell(2)), name="k3bi")
    bi.build((None, None, 3))
    ours = build_layer({"class_name": "Bidirectional",
                        "config": keras.saving.serialize_keras_object(bi)["config"]}, "keras3")
    ours.build((None, None, 3))
    ours.set_weights(bi.get_weights())
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(ours(x), torch.as_tensor(bi(x)).detach(), rtol=1e-5,
                               atol=1e-5)
