"""Keras' recurrent layers: ``LSTM``, ``GRU``, ``SimpleRNN`` (R: ``layer_lstm``,
``layer_gru``, ``layer_simple_rnn``) and the ``Bidirectional`` wrapper (R:
``bidirectional``), with tf-keras 2.21's arguments and numbers; the recurrences are
:func:`sepconv.functional.lstm`, :func:`~sepconv.functional.gru` and
:func:`~sepconv.functional.simple_rnn`."""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import functional as _functional
from .._registry import serialize
from .base import DTypePolicy, Layer, check_bool, check_count, layer_from_config
from .base import snake_case as _snake
from .conv_lstm import (_arguments, _RecurrentStates, draw_dropout_mask, first_shape,
                        forget_bias_ones, split_state_inputs)


class _RecurrentWeights:
    """What Keras' recurrent layers (:class:`_RNN`) and their cells
    (:class:`sepconv.layers.rnn._Cell`) share: the weights ``kernel`` ``(features, GATES *
    units)``, ``recurrent_kernel`` ``(units, GATES * units)``, ``bias`` (``_bias_shape``,
    ``_bias_initializer``), the dropout masks as tf-keras draws them, and the config entries
    of the step (``units`` to ``recurrent_dropout``).  ``_INPUT_RANK``: the rank of the
    input (layers ``(batch, time, features)``, cells ``(batch, features)``)."""

    GATES = 1
    WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias")
    _DEFAULT_RECURRENT_ACTIVATION: Optional[str] = None
    _INPUT_RANK = 3

    # -- building --------------------------------------------------------------------------
    def _bias_shape(self) -> Tuple[int, ...]:
        return (self.GATES * self.units,)

    def _bias_initializer(self):
        if not self.unit_forget_bias:  # True only where LSTM / LSTMCell take it
            return self.bias_initializer
        return forget_bias_ones(self.bias_initializer, self.units, self.units)

    def _build_weights(self, device) -> None:
        """The weights for ``self.input_dim`` features."""
        n = self.GATES * self.units
        self.add_weight("kernel", (self.input_dim, n), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint, device)
        self.add_weight("recurrent_kernel", (self.units, n), self.recurrent_initializer,
                        self.recurrent_regularizer, self.recurrent_constraint, device)
        if self.use_bias:
            self.add_weight("bias", self._bias_shape(), self._bias_initializer(),
                            self.bias_regularizer, self.bias_constraint, device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if not weights or len(getattr(weights[0], "shape", ())) != 2:
            return None
        return (None,) * (self._INPUT_RANK - 1) + (int(weights[0].shape[0]),)

    def _weights(self):
        return (self._weight("kernel"), self._weight("recurrent_kernel"),
                self._weight("bias") if self.use_bias else None)

    # -- computing -------------------------------------------------------------------------
    def _fused_path(self) -> bool:
        """Whether tf-keras 2.21 runs this layer on its fused (cuDNN-compatible) kernel,
        which draws its input dropout differently (see :class:`_RNN`); cells never do."""
        return False

    def _dropout_masks(self, x: torch.Tensor, training: bool):
        """``(x, dropout_mask, recurrent_dropout_mask)`` for ``x`` ``(batch, time,
        features)`` as tf-keras draws them."""
        if not training or (self.dropout == 0 and self.recurrent_dropout == 0):
            return x, None, None

        def draw(rate, shape):
            return draw_dropout_mask(rate, shape, x)

        batch, _, features = x.shape
        gates = self.GATES if self.recurrent_dropout > 0 else 1
        mask = rmask = None
        if self.dropout > 0:
            if self._fused_path():
                x = x * draw(self.dropout, tuple(x.shape))
            elif gates == 1 and self.GATES > 1:  # implementation 2: one mask, all gates
                x = x * draw(self.dropout, (batch, 1, features))
            else:  # implementation 1 (one mask per gate), or SimpleRNN's one mask
                mask = draw(self.dropout, (gates, batch, features))
        if self.recurrent_dropout > 0:
            rmask = draw(self.recurrent_dropout, (self.GATES, batch, self.units))
        return x, mask, rmask

    # -- Keras protocol --------------------------------------------------------------------
    def _step_config(self) -> Dict[str, Any]:
        """tf-keras' config entries from ``units`` to ``recurrent_dropout`` (a layer's
        ``activity_regularizer`` among them), ``_config_middle``'s and ``_config_end``'s
        in their places."""
        config = {"units": self.units, "activation": _activations.serialize(self.activation)}
        if self.recurrent_activation is not None:
            config["recurrent_activation"] = _activations.serialize(
                self.recurrent_activation)
        config.update({
            "use_bias": self.use_bias,
            "kernel_initializer": serialize(self.kernel_initializer),
            "recurrent_initializer": serialize(self.recurrent_initializer),
            "bias_initializer": serialize(self.bias_initializer)})
        config.update(self._config_middle())
        config.update({
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "recurrent_regularizer": serialize(self.recurrent_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer)})
        if self._INPUT_RANK == 3:  # layers; cells have no activity regularizer
            config["activity_regularizer"] = serialize(self.activity_regularizer)
        config.update({
            "kernel_constraint": serialize(self.kernel_constraint),
            "recurrent_constraint": serialize(self.recurrent_constraint),
            "bias_constraint": serialize(self.bias_constraint),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout})
        config.update(self._config_end())
        return config

    def _config_middle(self) -> Dict[str, Any]:
        """Entries between the initializers and the regularizers (LSTM's)."""
        return {}

    def _config_end(self) -> Dict[str, Any]:
        """Entries after ``recurrent_dropout`` (LSTM's, GRU's)."""
        return {}


class _RNN(_RecurrentWeights, _RecurrentStates, Layer):
    """Keras' recurrent layer over ``(batch, time, features)`` inputs (the public classes
    set ``GATES``, ``STATE_NAMES`` and the recurrence).

    Output: the last step's ``h`` ``(batch, units)``, or with ``return_sequences=True``
    every step's ``(batch, time, units)``; with ``go_backwards`` the steps run last to
    first and the sequence comes in that processing order, as in tf-keras.  With
    ``return_state=True`` the call returns ``[output, *states]`` (LSTM: ``h, c``; GRU and
    SimpleRNN: ``h``).

    Weights, Keras' shapes and ``get_weights()`` order: ``kernel``
    ``(features, GATES * units)``, ``recurrent_kernel`` ``(units, GATES * units)``,
    ``bias`` (absent when ``use_bias=False``), gates in Keras' order.

    ``forward(inputs, mask=None, training=None, initial_state=None)`` (Keras' call
    arguments): ``initial_state`` is the list of states (a single tensor is taken for a
    one-state layer); ``mask`` is Keras' timestep mask ``(batch, time)`` booleans
    (``False``: padding): a masked step keeps the states and outputs the previous step's
    output (zeros before the first unmasked step; zeros at every masked step inside a
    ``Bidirectional`` that returns sequences: tf-keras' ``zero_output_for_mask``), as
    tf-keras 2.21 computes it.  ``compute_mask`` gives the output mask (the input mask
    with ``return_sequences``, else ``None``); a model from :func:`sepconv.load_keras_model`
    or :class:`sepconv.Sequential` passes masks from ``Masking`` /
    ``Embedding(mask_zero=True)`` on its own.
    ``stateful=True`` keeps the last states (detached: truncated backpropagation through
    time) as the next call's initial state; the batch size is fixed by
    ``batch_input_shape`` / ``batch_size`` or the first call; ``reset_states(states=None)``
    zeroes them or sets given values.

    ``dropout`` / ``recurrent_dropout`` act in training mode (the module's ``train()`` /
    ``eval()``, or ``training=`` in the call) and follow tf-keras 2.21's three code paths,
    which draw different masks: (1) LSTM / GRU that tf-keras runs on its fused kernel
    (``activation="tanh"``, ``recurrent_activation="sigmoid"``, ``use_bias``, no
    ``recurrent_dropout``, not ``unroll``, GRU also ``reset_after``) drop input elements
    independently at every step, one mask for all gates; (2) other layers without
    ``recurrent_dropout`` draw one input mask per call shared by every step and gate;
    (3) with ``recurrent_dropout`` (tf-keras then switches to ``implementation=1``) one
    mask per gate per call, on the input and on ``h``.  SimpleRNN: one input and one
    recurrent mask per call.  Rates must lie in [0, 1) (tf-keras clips others silently).
    At inference dropout is the identity.

    ``unroll`` is accepted and changes nothing (same numbers); ``time_major=True`` takes
    ``(time, batch, features)`` inputs and masks ``(time, batch)`` and returns sequences
    ``(time, batch, units)``, as tf-keras does (not streamed).  The activity regularizer applies to each
    returned tensor, each penalty divided by the batch size, as in tf-keras.
    """

    STATE_NAMES: Tuple[str, ...] = ("state_h",)
    _STATE_LIST = "[h]"

    def __init__(self, units, activation="tanh", recurrent_activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=False, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, time_major=False,
                 unroll=False, reset_after=True, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        self.units = check_count(units, "units")
        self.activation = _activations.get(activation, "activation")
        self.recurrent_activation = None if self._DEFAULT_RECURRENT_ACTIVATION is None else \
            _activations.get(recurrent_activation, "recurrent_activation")
        self._init_recurrent(locals())
        self.time_major = check_bool(time_major, "time_major")
        self.unroll = check_bool(unroll, "unroll")
        self.reset_after = check_bool(reset_after, "reset_after")
        self.input_dim: Optional[int] = None
        if self.batch_input_shape is not None:
            arg, value = self._shape_argument
            if len(self.batch_input_shape) != 3:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected the shape "
                                 f"(time, features) of the inputs (without the batch axis). "
                                 f"Received {arg}={value}")
            features = self.batch_input_shape[2]
            if features is not None and features < 1:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected at least one "
                                 f"feature. Received {arg}={value}")
            batch = self.batch_input_shape[1 if self.time_major else 0]
            if self.stateful and batch is not None:
                self._stateful_shape = (batch, None, self.batch_input_shape[2])
        self._finish_init()

    # -- building --------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, (batch, time, "
                             f"features). Received input of shape {tuple(input_shape)}")
        if input_shape[2] is None:
            raise ValueError(f"The last dimension of the inputs of layer {self.name!r} "
                             f"should be defined. Received input_shape={tuple(input_shape)}")
        self.input_dim = check_count(input_shape[2], "input features")
        self._build_weights(device)

    def _check_input(self, shape) -> None:
        if len(shape) != 3 or shape[2] != self.input_dim:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, "
                             f"{self._layout()}, with {self.input_dim} features. Received "
                             f"input of shape {shape}")
        if self.time_major:
            shape = (shape[1], shape[0], shape[2])
        if shape[1] == 0:
            raise ValueError(f"Layer {self.name!r} received input of shape {shape} with no "
                             f"time steps")
        if self.stateful:
            if self._stateful_shape is None:
                self._stateful_shape = (shape[0], None, shape[2])
            if shape[0] != self._stateful_shape[0]:
                raise ValueError(f"Layer {self.name!r} is stateful: its batch size is fixed "
                                 f"to {self._stateful_shape[0]} (batch_input_shape or the "
                                 f"first call). Received input of shape {shape}")

    def _state_shape(self, shape) -> Tuple[Optional[int], ...]:
        return (shape[0], self.units)

    def _layout(self) -> str:
        return "(time, batch, features)" if self.time_major else "(batch, time, features)"

    def compute_output_shape(self, input_shape):
        shape = tuple(first_shape(input_shape))
        if self.time_major:
            shape = (shape[1], shape[0]) + shape[2:]
        out = (shape[0], shape[1], self.units) if self.return_sequences \
            else (shape[0], self.units)
        if self.time_major and self.return_sequences:
            out = (out[1], out[0], out[2])
        if self.return_state:
            return [out] + [(shape[0], self.units)] * len(self.STATE_NAMES)
        return out

    # -- computing -------------------------------------------------------------------------
    def _recurrence(self, x, state, mask, rmask):
        raise NotImplementedError

    def forward(self, inputs, mask=None, training=None, initial_state=None):
        """Keras' call arguments.  ``inputs``: ``(batch, time, features)``, a tensor or
        numpy array; ``training`` overrides ``self.training``; ``initial_state``: the
        list of states, each ``(batch, units)`` (or ``inputs`` the list ``[inputs,
        *states]``, as tf-keras calls it)."""
        inputs, initial_state = split_state_inputs(self.name, inputs, initial_state)
        x = self._prepare_input(inputs)
        if isinstance(mask, (list, tuple)):  # tf-keras takes the first of a list
            mask = mask[0] if mask else None
        if mask is not None:
            mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor)
                                   else mask, device=x.device)
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"Invalid value for argument `mask`. Expected shape "
                                 f"{tuple(x.shape[:2])} "
                                 f"({'time, batch' if self.time_major else 'batch, time'}). "
                                 f"Received {tuple(mask.shape)}")
        if self.time_major:  # tf-keras' time_major: inputs, masks and sequences (time, batch)
            x = x.transpose(0, 1)
            mask = None if mask is None else mask.transpose(0, 1)
        training = self.training if training is None else bool(training)
        state = self._call_state(initial_state, self._state_shape(tuple(x.shape)), x)
        x, dmask, rmask = self._dropout_masks(x, training)
        self._step_mask = mask
        try:
            output, *states = self._recurrence(x, state, dmask, rmask)
        finally:
            self._step_mask = None
        if self.time_major and self.return_sequences:
            output = output.transpose(0, 1)
        return self._call_result(output, states)

    def _stream_chunk(self, x: torch.Tensor, state, mask: Optional[torch.Tensor] = None):
        """Every step's output ``(batch, time, units)`` and the last states, from ``state``
        (None: zeros), without dropout, with the Keras ``mask`` ``(batch, time)`` booleans
        if given (masked steps output zeros before the chunk's first unmasked one, or
        with ``zero_output_for_mask``): ``(output, *states)``.  What
        :func:`sepconv.stream` runs on each chunk, whatever ``return_sequences``."""
        self._stream_sequences, self._step_mask = True, mask
        try:
            return self._recurrence(x, state, None, None)
        finally:
            self._stream_sequences, self._step_mask = False, None

    def _args(self, state, mask, rmask) -> Dict[str, Any]:
        sequences = self.return_sequences or self.__dict__.get("_stream_sequences", False)
        return dict(activation=self.activation, initial_state=state,
                    go_backwards=self.go_backwards, return_sequences=sequences,
                    dropout_mask=mask, recurrent_dropout_mask=rmask,
                    mask=self.__dict__.get("_step_mask"),
                    zero_output_for_mask=self.zero_output_for_mask)

    # -- Keras protocol --------------------------------------------------------------------
    def h5_weight_names(self):
        """The weights' paths under the layer in tf-keras' ``.h5`` files
        (``lstm_cell/kernel``, ...): tf-keras keeps them in the layer's cell."""
        cell = _snake(type(self).__name__) + "_cell"
        return [f"{cell}/{name}" for name in self._weight_order]

    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({"return_sequences": self.return_sequences,
                       "return_state": self.return_state, "go_backwards": self.go_backwards,
                       "stateful": self.stateful, "unroll": self.unroll,
                       "time_major": self.time_major})
        config.update(self._step_config())
        return config

    def extra_repr(self) -> str:
        return self._recurrent_repr([f"{self.input_dim if self.built else '?'}",
                                     f"{self.units}"], "sigmoid")


def _is(fn, name: str) -> bool:
    return fn is _activations.get(name)


class LSTM(_RNN):
    """Keras' ``LSTM`` (R: ``layer_lstm``): gates i, f, c, o; per step
    ``c = ra(f) * c + ra(i) * a(g)``, ``h = ra(o) * a(c)`` (``a = activation``, tanh;
    ``ra = recurrent_activation``, sigmoid in TF2).  ``bias`` ``(4 * units,)``;
    ``unit_forget_bias`` sets its forget part to ones at creation.  States ``[h, c]``.
    See :class:`sepconv.layers.recurrent._RNN` for the whole contract."""

    GATES = 4
    STATE_NAMES = ("state_h", "state_c")
    _STATE_LIST = "[h, c]"
    _DEFAULT_RECURRENT_ACTIVATION = "sigmoid"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, time_major=False, unroll=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    def _fused_path(self) -> bool:
        return (_is(self.activation, "tanh") and _is(self.recurrent_activation, "sigmoid")
                and self.recurrent_dropout == 0 and not self.unroll and self.use_bias)

    def _recurrence(self, x, state, mask, rmask):
        return _functional.lstm(x, *self._weights(),
                                recurrent_activation=self.recurrent_activation,
                                **self._args(state, mask, rmask))

    def _config_middle(self) -> Dict[str, Any]:
        return {"unit_forget_bias": self.unit_forget_bias}

    def _config_end(self) -> Dict[str, Any]:
        return {"implementation": 1 if self.recurrent_dropout else 2}


class GRU(_RNN):
    """Keras' ``GRU`` (R: ``layer_gru``): gates z, r, h; ``h = z * h + (1 - z) * hh``.
    ``reset_after=True`` (TF2's default) applies the reset gate after the recurrent
    product, with ``bias`` ``(2, 3 * units)`` (input row, recurrent row);
    ``reset_after=False`` before it, with ``bias`` ``(3 * units,)``.  See
    :func:`sepconv.functional.gru` and :class:`sepconv.layers.recurrent._RNN`."""

    GATES = 3
    _DEFAULT_RECURRENT_ACTIVATION = "sigmoid"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, time_major=False, reset_after=True,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    def _bias_shape(self) -> Tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _fused_path(self) -> bool:
        return (_is(self.activation, "tanh") and _is(self.recurrent_activation, "sigmoid")
                and self.recurrent_dropout == 0 and not self.unroll and self.use_bias
                and self.reset_after)

    def _recurrence(self, x, state, mask, rmask):
        return _functional.gru(x, *self._weights(),
                               recurrent_activation=self.recurrent_activation,
                               reset_after=self.reset_after,
                               **self._args(state, mask, rmask))

    def _config_end(self) -> Dict[str, Any]:
        return {"implementation": 1 if self.recurrent_dropout else 2,
                "reset_after": self.reset_after}


class SimpleRNN(_RNN):
    """Keras' ``SimpleRNN`` (R: ``layer_simple_rnn``): ``h = a(x_t @ kernel + bias +
    h @ recurrent_kernel)``, ``bias`` ``(units,)``.  See
    :class:`sepconv.layers.recurrent._RNN` for the whole contract."""

    GATES = 1

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    CONFIG_ONLY_ARGS = ("time_major",)  # read by from_config, not a constructor argument

    @classmethod
    def from_config(cls, config):
        """tf-keras' ``SimpleRNN`` takes ``time_major`` through its ``**kwargs`` (not in its
        signature, so not in sepconv's): a config that sets it gets it, as a file needs."""
        config = dict(config)
        time_major = config.pop("time_major", False)
        layer = super().from_config(config)
        if time_major:
            layer.time_major = check_bool(time_major, "time_major")
            if layer.batch_input_shape is not None and layer.stateful:
                layer._stateful_shape = (layer.batch_input_shape[1], None,
                                         layer.batch_input_shape[2])
        return layer

    def _recurrence(self, x, state, mask, rmask):
        return _functional.simple_rnn(x, *self._weights(), **self._args(state, mask, rmask))


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _as_layer(value: Any, arg: str) -> Layer:
    value = layer_from_config(value, arg)
    if not isinstance(value, _RNN) and type(value).__name__ != "RNN":  # layers/rnn.py's
        raise ValueError(f"Invalid value for argument `{arg}`. Expected a sepconv recurrent "
                         f"layer (LSTM, GRU, SimpleRNN, RNN) or its config dict. Received "
                         f"{arg}={value!r}")
    return value


def _prefixed(prefix: str, name: str) -> str:
    return name if name.startswith(prefix) else prefix + name


class Bidirectional(Layer):
    """Keras' ``Bidirectional`` (R: ``bidirectional``): runs ``layer`` forwards and a
    copy of it (or ``backward_layer``) with the other ``go_backwards`` over the same
    input, then merges: ``merge_mode`` ``"concat"`` (last axis), ``"sum"``, ``"mul"``,
    ``"ave"`` or ``None`` (the list ``[forward, backward]``).  With ``return_sequences``
    the backward output is reversed in time first, so both align with the input steps.
    With ``return_state`` the call returns ``[output(s), *forward_states,
    *backward_states]``; ``initial_state`` is split the same way (first half forward).

    The forward layer is ``layer`` itself deep-copied (tf-keras rebuilds it from its
    config: a built ``layer``'s weights are kept here, as a torch user expects), named
    ``forward_<name>``; without ``backward_layer`` the backward one is built from
    ``layer``'s config with ``go_backwards`` flipped, named ``backward_<name>``.  Weights:
    the forward layer's, then the backward layer's (Keras' order in files).  The
    sublayers' penalties are in their own ``losses`` (and in
    :func:`sepconv.regularization_loss`).
    """

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if isinstance(merge_mode, str):
            merge_mode = merge_mode.lower()
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Invalid value for argument `merge_mode`. Expected one of "
                             f"{_MERGE_MODES}. Received merge_mode={merge_mode!r}")
        self.merge_mode = merge_mode
        layer = _as_layer(layer, "layer")
        self._layer_config = {"class_name": type(layer).__name__,
                              "config": layer.get_config()}
        forward = copy.deepcopy(layer)
        forward.name = _prefixed("forward_", layer.name)
        if backward_layer is None:
            config = dict(layer.get_config())
            config["go_backwards"] = not layer.go_backwards
            config["name"] = _prefixed("backward_", layer.name)
            config.pop("batch_input_shape", None)
            backward = type(layer).from_config(config)
            self._backward_config = None
        else:
            backward = _as_layer(backward_layer, "backward_layer")
            self._backward_config = {"class_name": type(backward).__name__,
                                     "config": backward.get_config()}
            backward.name = _prefixed("backward_", backward.name)
        if forward.go_backwards == backward.go_backwards:
            raise ValueError("Forward layer and backward layer should have different "
                             f"`go_backwards` value. forward_layer.go_backwards = "
                             f"{forward.go_backwards}, backward_layer.go_backwards = "
                             f"{backward.go_backwards}")
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(forward, attr) != getattr(backward, attr):
                raise ValueError(f"Forward layer and backward layer are expected to have the "
                                 f"same value for attribute {attr!r}, got "
                                 f"{getattr(forward, attr)} for forward layer and "
                                 f"{getattr(backward, attr)} for backward layer")
        # tf-keras forces zero_output_for_mask = return_sequences on both layers
        forward.zero_output_for_mask = forward.return_sequences
        backward.zero_output_for_mask = backward.return_sequences
        self.forward_layer = forward
        self.backward_layer = backward
        if dtype is None:
            self.dtype_policy = DTypePolicy(forward.dtype_policy.name)
        self.stateful = forward.stateful
        self.return_sequences = forward.return_sequences
        self.return_state = forward.return_state
        if trainable is not None:
            self.trainable = self._trainable
        if self.batch_input_shape is None and forward.batch_input_shape is not None:
            self.batch_input_shape = forward.batch_input_shape
        self._finish_init()
        if not self.built and forward.built and backward.built:
            self.built = True

    def build(self, input_shape, device=None) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, (batch, time, "
                             f"features). Received input of shape {tuple(input_shape)}")
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub._build_checked(tuple(input_shape), device=device)

    def _input_shape_from_weights(self, weights):
        return self.forward_layer._input_shape_from_weights(weights)

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    def get_weights(self):
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()

    def set_weights(self, weights) -> None:
        weights = list(weights)
        self._build_from_weights(weights)
        n = len(self.forward_layer.weights)
        if len(weights) != n + len(self.backward_layer.weights):
            raise ValueError(f"Layer {self.name!r} expects "
                             f"{n + len(self.backward_layer.weights)} weights (forward "
                             f"then backward), but received {len(weights)} weights")
        self.forward_layer.set_weights(weights[:n])
        self.backward_layer.set_weights(weights[n:])

    def h5_weight_names(self):
        """``forward_<name>/lstm_cell/kernel``, ..., then the backward layer's, as tf-keras
        names them in ``.h5`` files."""
        return [f"{sub.name}/{n}" for sub in (self.forward_layer, self.backward_layer)
                for n in sub.h5_weight_names()]

    def constrained_parameters(self):
        return []

    @property
    def losses(self):
        return []

    @property
    def states(self):
        f, b = self.forward_layer.states, self.backward_layer.states
        return None if f is None else f + b

    def reset_states(self, states=None) -> None:
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        if states is None:
            self.forward_layer.reset_states()
            self.backward_layer.reset_states()
            return
        if not isinstance(states, (list, tuple)):
            raise ValueError(f"Unrecognized value for `states`. Expected `states` to be "
                             f"list or tuple. Received: {states!r}")
        half = len(states) // 2
        self.forward_layer.reset_states(states[:half])
        self.backward_layer.reset_states(states[half:])

    def _build_checked(self, input_shape, device) -> None:
        super()._build_checked(first_shape(input_shape), device)

    def compute_output_shape(self, input_shape):
        input_shape = first_shape(input_shape)
        out = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], out[1:]
            states = states + self.backward_layer.compute_output_shape(input_shape)[1:]
        bout = self.backward_layer.compute_output_shape(input_shape)
        if self.return_state:
            bout = bout[0]
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (out[-1] + bout[-1],)
        elif self.merge_mode is None:
            out = [out, bout]
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + list(states)
        return out

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        """tf-keras' ``Bidirectional.compute_mask``: the input mask with
        ``return_sequences`` (twice for ``merge_mode=None``), else ``None``; ``None`` for
        each state with ``return_state``."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if self.return_sequences:
            output_mask = [mask, mask] if not self.merge_mode else mask
        else:
            output_mask = [None, None] if not self.merge_mode else None
        if not self.return_state:
            return output_mask
        states = [None] * (len(self.forward_layer.STATE_NAMES) * 2)
        return (output_mask if isinstance(output_mask, list) else [output_mask]) + states

    def forward(self, inputs, mask=None, training=None, initial_state=None):
        """``inputs``: ``(batch, time, features)``; ``mask`` ``(batch, time)`` (both layers
        take it; at masked steps they output zeros when returning sequences, as tf-keras'
        ``Bidirectional`` makes them); ``training`` and ``initial_state`` (the forward
        layer's states, then the backward layer's) as Keras' call arguments."""
        inputs, initial_state = split_state_inputs(self.name, inputs, initial_state)
        # no cast here: each sublayer casts to its own compute dtype
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if not self.built:
            self._build_checked(tuple(x.shape), device=x.device)
        fstate = bstate = None
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) % 2:
                raise ValueError("Invalid value for argument `initial_state`. Expected a "
                                 "list of the forward layer's states then the backward "
                                 f"layer's (an even count). Received {initial_state!r}")
            half = len(initial_state) // 2
            fstate, bstate = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer(x, mask=mask, training=training, initial_state=fstate)
        y_rev = self.backward_layer(x, mask=mask, training=training, initial_state=bstate)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = torch.flip(y_rev, (1,))
        if self.merge_mode == "concat":
            output = torch.cat([y, y_rev], dim=-1)
        elif self.merge_mode == "sum":
            output = y + y_rev
        elif self.merge_mode == "ave":
            output = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            output = y * y_rev
        else:
            output = [y, y_rev]
        if self.return_state:
            return (output if isinstance(output, list) else [output]) + states
        return output

    def get_config(self) -> Dict[str, Any]:
        layer = dict(self._layer_config)
        layer["config"] = {**self.forward_layer.get_config(),
                           "name": self._layer_config["config"]["name"]}
        config = {**self.base_config(), "layer": layer, "merge_mode": self.merge_mode}
        if self._backward_config is not None:
            config["backward_layer"] = {
                "class_name": self._backward_config["class_name"],
                "config": {**self.backward_layer.get_config(),
                           "name": self._backward_config["config"]["name"]}}
        return config

    def extra_repr(self) -> str:
        return f"merge_mode={self.merge_mode!r}, name={self.name!r}"
