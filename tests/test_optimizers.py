"""sepconv.optimizers against tf-keras 2.21 and Keras 3.15 (its torch backend, as conftest
sets it; its TensorFlow backend in test_keras3_tensorflow.py): the same weights and
gradients, STEPS steps of each configuration, computed once by each Keras (one batch in
this process) and compared with ours in the matching ``flavour``, float32 and float64."""

import numpy as np
import pytest
import torch

import sepconv
from keras_files import outputs
from sepconv import optimizers

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

STEPS = 5
SHAPES = [(4, 3), (3,), (2, 2, 2)]
#: the steps where the last weight has no gradient (Keras skips it: no decay, no update)
NO_GRAD = {2}


def _schedule(K, kind):
    if kind == "exp":
        return K.optimizers.schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
    if kind == "exp_stair":
        return K.optimizers.schedules.ExponentialDecay(0.01, 3, 0.7, staircase=True)
    return K.optimizers.schedules.PiecewiseConstantDecay([1, 3], [0.05, 0.01, 0.002])


#: (class, kwargs); "schedule" names a learning-rate schedule built on each side
CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"schedule": "piecewise", "momentum": 0.5}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.02, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 1e-3,
              "clipnorm": 0.5}),
    ("Adam", {"global_clipnorm": 0.7, "weight_decay": 0.1}),
    ("Adam", {"clipvalue": 0.3, "schedule": "exp"}),
    ("AdamW", {"learning_rate": 0.01}),
    ("AdamW", {"weight_decay": 0.05, "amsgrad": True, "schedule": "exp_stair"}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.7}),
    ("RMSprop", {"centered": True, "epsilon": 1e-4}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "clipnorm": 0.4}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.05, "initial_accumulator_value": 0.5, "epsilon": 1e-3}),
    ("Adamax", {}),
    ("Adamax", {"learning_rate": 0.02, "beta_1": 0.7, "beta_2": 0.5}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.02, "beta_1": 0.8, "weight_decay": 0.02}),
]


def _data(dtype):
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return weights, grads


def _build(K, name, kwargs):
    kwargs = dict(kwargs)
    kind = kwargs.pop("schedule", None)
    if kind is not None:
        kwargs["learning_rate"] = _schedule(K, kind)
    return getattr(K.optimizers, name)(**kwargs)


class _Ours:  # the schedules' namespace mirrored: optimizers.ExponentialDecay, ...
    class optimizers:
        schedules = optimizers


def _keras_steps(K):
    """Each case's weights after STEPS steps by ``K`` (tf-keras, or Keras 3 on the backend
    its process has), by (case, dtype)."""
    if K is tf_keras:
        variable, tensor, array = tf.Variable, tf.constant, lambda v: v.numpy()
    else:
        def variable(w):
            return K.Variable(w, dtype=w.dtype.name)
        tensor = K.ops.convert_to_tensor

        def array(v):
            return outputs(v.value)[0].copy()
    out = {}
    for dtype in ("float32", "float64"):
        weights, grads = _data(dtype)
        for i, (name, kwargs) in enumerate(CASES):
            variables = [variable(w) for w in weights]
            opt = _build(K, name, kwargs)
            for step, gs in enumerate(grads):
                pairs = [(tensor(g), v) for g, v in zip(gs, variables)]
                opt.apply_gradients(pairs[:-1] if step in NO_GRAD else pairs)
            out[i, dtype] = [array(v) for v in variables]
    return out


@pytest.fixture(scope="module")
def reference():
    """Each case's weights after STEPS steps, by (case, dtype, flavour)."""
    keras = pytest.importorskip("keras")
    return {(*key, flavour): weights
            for flavour, K in (("tf_keras", tf_keras), ("keras3", keras))
            for key, weights in _keras_steps(K).items()}


def _ours(name, kwargs, dtype, flavour="tf_keras"):
    weights, grads = _data(dtype)
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in weights]
    kwargs = dict(kwargs)
    kind = kwargs.pop("schedule", None)
    if kind is not None:
        kwargs["learning_rate"] = _schedule(_Ours, kind)
    opt = getattr(optimizers, name)(params, **kwargs, flavour=flavour)
    for step, gs in enumerate(grads):
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g)
        if step in NO_GRAD:
            params[-1].grad = None
        opt.step()
    assert opt.iterations == STEPS
    return [p.detach().numpy() for p in params]


def _failures(reference, dtype, flavour):
    """Each case by ours in ``flavour`` against ``reference[case, dtype, flavour]``."""
    tol = 1e-6 if dtype == "float32" else 1e-13  # (float32: rounding, 4e-7 seen)
    failures = []
    for i, (name, kwargs) in enumerate(CASES):
        for k, (got, want) in enumerate(zip(_ours(name, kwargs, dtype, flavour),
                                            reference[i, dtype, flavour])):
            err = float(np.max(np.abs(got.astype(np.float64) - want) / (1e-3 + np.abs(want))))
            if not err <= tol:
                failures.append(f"{name} {kwargs} weight {k}: relative error {err:.3g}")
    return failures


@pytest.mark.parametrize("flavour", ["tf_keras", "keras3"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_steps_equal_keras(reference, dtype, flavour):
    failures = _failures(reference, dtype, flavour)
    assert not failures, "\n".join(failures)


def test_get_names_configs_keras_objects_and_r_factories():
    params = [torch.nn.Parameter(torch.zeros(2))]
    theirs = tf_keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.3, centered=True)
    ours = optimizers.get(theirs, params)
    assert isinstance(ours, optimizers.RMSprop)
    assert {k: ours.param_groups[0][k] for k in ("rho", "momentum", "centered")} == \
        {"rho": 0.8, "momentum": 0.3, "centered": True}
    assert ours.learning_rate == pytest.approx(0.01)
    config = {"class_name": "Custom>Adam", "config": theirs.get_config() | {"amsgrad": True}}
    config["config"].pop("rho"), config["config"].pop("momentum"), config["config"].pop("centered")
    assert optimizers.get(config, params).param_groups[0]["amsgrad"] is True
    sched = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    opt = optimizers.get(tf_keras.optimizers.SGD(sched), params)
    assert isinstance(opt.param_groups[0]["learning_rate"], optimizers.ExponentialDecay)
    assert isinstance(optimizers.get("optimizer_adam", params), optimizers.Adam)
    factory = sepconv.optimizer_adamax(learning_rate=0.5, beta_1=0.3)
    opt = optimizers.get(factory, params)
    assert isinstance(opt, optimizers.Adamax) and opt.param_groups[0]["beta_1"] == 0.3
    restored = optimizers.get(optimizers.serialize(opt), params)
    assert restored.get_config() == opt.get_config()
    # the flavour: an argument, get's, R's factories', the keras_flavour block's
    assert optimizers.Adam(params).flavour == "tf_keras"
    assert optimizers.get("adam", params, flavour="keras3").flavour == "keras3"
    assert optimizers.get(sepconv.optimizer_nadam(flavour="keras3"), params).flavour == "keras3"
    assert optimizers.get(config, params, flavour="keras3_tf").flavour == "keras3_tf"
    with pytest.raises(ValueError, match="flavour.*'keras3_torch'"):
        optimizers.get("adam", params, flavour="keras3_torch")
    with sepconv.activations.keras_flavour("keras3"):
        assert optimizers.get(config, params).flavour == "keras3"
    with pytest.raises(ValueError, match="flavour.*'keras2'"):
        optimizers.SGD(params, flavour="keras2")
    with pytest.raises(ValueError, match="optimizer.*'adamm'"):
        optimizers.get("adamm", params)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(params, momentum=1.5)
    with pytest.raises(ValueError, match="use_ema"):
        optimizers.Adam(params, use_ema=True)
    with pytest.raises(TypeError, match="beta1"):
        optimizers.Adam(params, beta1=0.9)


def test_state_dict_resumes_exactly():
    """Checkpointing mid-run (torch's state_dict) gives the uninterrupted run's weights."""
    torch.manual_seed(0)
    grads = [torch.randn(5) for _ in range(4)]

    def run(split):
        p = torch.nn.Parameter(torch.ones(5))
        opt = optimizers.Nadam([p], learning_rate=0.1)
        for i, g in enumerate(grads):
            if i == split:
                saved = opt.state_dict()
                p = torch.nn.Parameter(p.detach().clone())
                opt = optimizers.Nadam([p], learning_rate=0.1)
                opt.load_state_dict(saved)
            p.grad = g
            opt.step()
        return p.detach()
    assert torch.equal(run(None), run(2))


def test_constraints_hold_after_each_step():
    layer = sepconv.Dense(3, kernel_constraint="non_neg", input_shape=(4,))
    opt = optimizers.SGD(layer.parameters(), learning_rate=1.0)
    layer(torch.randn(8, 4)).sum().backward()
    opt.step()
    assert float(layer.kernel.detach().min()) >= 0.0
