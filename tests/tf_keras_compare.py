"""Helpers for the tests that compare a sepconv layer with its tf-keras 2.21 twin.

Import only from test modules that have already run ``pytest.importorskip("tensorflow")``
(TensorFlow is imported inside the functions that need it, never here).
"""

from __future__ import annotations

import numpy as np
import torch


def strip_config(config):
    """Keras' nested ``{'class_name', 'config'}`` without tf-keras' bookkeeping (``module``,
    ``registered_name``); lists as tuples; floats at float32 precision (tf-keras keeps
    regularizer factors as float32)."""
    if isinstance(config, dict):
        if "class_name" in config:
            return {"class_name": config["class_name"],
                    "config": strip_config(config["config"])}
        return {k: strip_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return tuple(config)
    if isinstance(config, float):
        return float(np.float32(config))
    return config


def config_without_names(config):
    """A config to compare across the two libraries: nested ``{'class_name', 'config'}``
    kept bare, every ``name`` dropped, lists and tuples as tuples (recursively), floats
    (and 0-d arrays) at float32 precision."""
    if isinstance(config, dict):
        if "class_name" in config:
            return {"class_name": config["class_name"],
                    "config": config_without_names(config["config"])}
        return {k: config_without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, (list, tuple)):
        return tuple(config_without_names(v) for v in config)
    if isinstance(config, (float, np.floating, np.ndarray)):
        return float(np.float32(config))
    return config


def check_sgd_step(ours, ref, x: np.ndarray, target: np.ndarray, lr: float = 0.5) -> None:
    """One SGD step on ``mean((layer(x) - target) ** 2)`` plus the layer's losses, in torch
    (``ours``) and in tf-keras (``ref``, same weights): the losses agree to 1e-5 relative,
    the weights after the step (the constraints' projection included) to 1e-5."""
    import tensorflow as tf
    import tf_keras
    opt = torch.optim.SGD(ours.parameters(), lr=lr)
    loss = torch.mean((ours(torch.from_numpy(x)) - torch.from_numpy(target)) ** 2)
    loss = loss + sum(ours.losses)
    loss.backward()
    opt.step()
    tf_opt = tf_keras.optimizers.SGD(learning_rate=lr)
    with tf.GradientTape() as tape:
        tf_loss = tf.reduce_mean((ref(x) - target) ** 2)
        if ref.losses:
            tf_loss = tf_loss + tf.add_n(ref.losses)
    tf_opt.apply_gradients(zip(tape.gradient(tf_loss, ref.trainable_weights),
                               ref.trainable_weights))
    np.testing.assert_allclose(loss.item(), float(tf_loss), rtol=1e-5)
    for got, want in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


def _same(a):
    return a


def recurrent_outputs_and_gradients(layer, ref, x: np.ndarray, initial_state=None, seed=0,
                                    to_tf=_same, from_tf=_same):
    """Call sepconv's recurrent ``layer`` and tf-keras' ``ref`` (same weights) on ``x`` (and
    ``initial_state``), and take the gradient of the sum of each output times a random probe
    (drawn from ``seed``). Returns ``(ours, grads, theirs, tf_grads)`` as numpy arrays in
    ``layer``'s layout: the outputs (a list, states included), then the gradients with respect
    to the input and each weight. ``to_tf`` / ``from_tf`` move an array from ``layer``'s
    layout to tf-keras' and back (ConvLSTM's channels_first, which tf-keras' CPU kernels
    lack)."""
    import tensorflow as tf
    xt = torch.tensor(x, requires_grad=True)
    st = None if initial_state is None else [torch.tensor(s) for s in initial_state]
    ours = layer(xt, initial_state=st)
    ours = list(ours) if isinstance(ours, (list, tuple)) else [ours]
    rng = np.random.default_rng(seed)
    probes = [rng.standard_normal(tuple(o.shape)) for o in ours]
    loss = sum((o * torch.tensor(p, dtype=o.dtype)).sum() for o, p in zip(ours, probes))
    grads = torch.autograd.grad(loss, [xt] + list(layer.weights))
    x_tf = tf.Variable(to_tf(x))
    st_tf = None if initial_state is None else [tf.constant(to_tf(s)) for s in initial_state]
    with tf.GradientTape() as tape:
        theirs = ref(x_tf, initial_state=st_tf)
        theirs = list(theirs) if isinstance(theirs, (list, tuple)) else [theirs]
        tf_loss = tf.add_n([tf.reduce_sum(o * to_tf(p.astype(x.dtype)))
                            for o, p in zip(theirs, probes)])
    tf_grads = [np.asarray(g) for g in tape.gradient(tf_loss, [x_tf] + ref.trainable_weights)]
    tf_grads[0] = from_tf(tf_grads[0])
    return ([o.detach().numpy() for o in ours], [g.numpy() for g in grads],
            [from_tf(t.numpy()) for t in theirs], tf_grads)


COMMON_ARGUMENTS = ("input_shape", "batch_input_shape", "batch_size", "dtype", "name",
                    "trainable", "weights")


def check_signature(ours, theirs, r_function, required: int) -> None:
    """The layer class ``ours`` takes tf-keras' ``theirs`` arguments (names, order,
    defaults), then the common Keras 2 / R ones (default None); the R-style ``r_function``
    takes ``object=None``, then the same arguments, the first ``required`` by name (R makes
    them required), the rest with their defaults."""
    import inspect
    their_params = [p for p in inspect.signature(theirs).parameters.values()
                    if p.kind is not p.VAR_KEYWORD]
    params = list(inspect.signature(ours).parameters.values())
    assert [(p.name, p.default) for p in params[:len(their_params)]] == \
        [(p.name, p.default) for p in their_params]
    assert [(p.name, p.default) for p in params[len(their_params):]] == \
        [(name, None) for name in COMMON_ARGUMENTS]
    r = list(inspect.signature(r_function).parameters.values())
    assert r[0].name == "object" and r[0].default is None
    assert [p.name for p in r[1:1 + required]] == [p.name for p in params[:required]]
    assert [(p.name, p.default) for p in r[1 + required:]] == \
        [(p.name, p.default) for p in params[required:]]
