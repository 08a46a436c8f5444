"""The fast paths step aside where a tool transforms or records the ops
(``kernels/graphs.py``): ``torch.func`` transforms (their wrapped tensors have no storage for
a C routine), fake tensors, CPU autocast.  A model made of the layers whose CPU float32 calls
run sepconv's C routines (separable and depthwise convolutions, batch and layer
normalization, TensorFlow's tanh / sigmoid, the LSTM's in-place inference) gives under
``vmap`` / ``grad`` what it gives eagerly."""

import pytest
import torch

import sepconv
from sepconv.kernels import graphs


def _model(training: bool):  # (training: batch norm's mode)
    torch.manual_seed(0)
    model = sepconv.Sequential(
        sepconv.SeparableConv1D(8, 3, padding="causal", depth_multiplier=2,
                                input_shape=(12, 4)),
        sepconv.BatchNormalization(),
        sepconv.DepthwiseConv1D(3, padding="same", activation="tanh"),
        sepconv.LayerNormalization(),
        sepconv.LSTM(6, return_sequences=True),
        sepconv.Dense(5, activation="sigmoid"),
    )
    with torch.no_grad():  # moving statistics away from (0, 1): the eval pass uses them
        model.eval()(torch.zeros(1, 12, 4))  # (builds every layer)
        model[1].moving_mean.uniform_(-0.5, 0.5)
        model[1].moving_variance.uniform_(0.5, 2.0)
    return model.train(training)


def test_vmap_matches_a_loop(torch_single_thread):
    model, x = _model(False), torch.randn(3, 2, 12, 4)
    with torch.no_grad():
        mapped = torch.func.vmap(model, randomness="same")(x)
        looped = torch.stack([model(x[i]) for i in range(x.shape[0])])
    torch.testing.assert_close(mapped, looped, rtol=1e-5, atol=1e-5)


def test_func_grad_matches_autograd(torch_single_thread):
    # (batch norm in eval mode: in training its moving statistics are updated in place,
    # which torch.func refuses, as for torch's own BatchNorm)
    model, x = _model(False), torch.randn(2, 12, 4)

    def loss(inputs):
        return model(inputs).square().sum()

    expected_x = x.clone().requires_grad_()
    loss(expected_x).backward()
    got = torch.func.grad(loss)(x)
    torch.testing.assert_close(got, expected_x.grad, rtol=1e-5, atol=1e-5)
    # per-sample gradients of the weights, the common use of vmap(grad)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def sample_loss(p, sample):
        return torch.func.functional_call(model, p, (sample[None],)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        model.zero_grad()
        model(x[i:i + 1]).square().sum().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-5, atol=1e-5)


def test_vmap_of_embedding_lookups():
    # (Embedding's range check reads the ids: on real eager tensors only)
    layer = sepconv.Embedding(10, 4)
    ids = torch.randint(0, 10, (3, 2, 7))
    with torch.no_grad():
        torch.testing.assert_close(torch.func.vmap(layer)(ids),
                                   torch.stack([layer(i) for i in ids]))
    with pytest.raises(ValueError, match="indices must be in"):
        layer(torch.tensor([[10]]))


def test_fake_tensors_give_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    model = _model(False)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
        y = model(mode.from_tensor(torch.randn(2, 12, 4)))
    assert tuple(y.shape) == (2, 12, 5)


def test_autocast_runs_the_standard_ops():
    model, x = _model(False), torch.randn(2, 12, 4)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert graphs.standard_ops_wanted() and graphs.standard_ops_wanted(compiled=True)
            got = model(x)
    torch.testing.assert_close(got.float(), expected, rtol=0.05, atol=0.05)


def test_the_predicates():
    assert not graphs.standard_ops_wanted() and not graphs.recording()
    assert graphs.plain(torch.ones(2), None, torch.nn.Parameter(torch.ones(1)))
    seen = []

    def probe(t):
        seen.append((graphs.standard_ops_wanted(), graphs.plain(t)))
        return t

    torch.func.vmap(probe)(torch.ones(3, 2))
    assert seen == [(True, False)]
    seen.clear()
    torch.jit.trace(probe, torch.ones(2))
    assert seen[0][0] and graphs.recording.__doc__
