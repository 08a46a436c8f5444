"""Convolutional LSTMs: ``ConvLSTM1D``, ``ConvLSTM2D``, ``ConvLSTM3D`` (Keras'
``layer_conv_lstm_1d`` / ``_2d`` / ``_3d``), one rank-generic base, the cell math once in
:func:`sepconv.functional.conv_lstm`."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import constraints as _constraints
from .. import functional as _functional
from .. import initializers as _initializers
from .. import padding as _padding
from .. import regularizers as _regularizers
from .._registry import serialize
from ..kernels import graphs as _graphs
from .base import (Layer, check_bool, check_conv_geometry, check_count,
                   check_data_format, check_padding)


def _arguments(frame_locals: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in frame_locals.items() if k not in ("self", "__class__")}


def _rate(value: Any, name: str) -> float:
    """A dropout fraction in [0, 1).  tf-keras clips silently, and at 1.0 drops nothing
    (its cell tests ``0 < rate < 1``); sepconv raises instead."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid type for argument `{name}`. Expected a float in [0, 1). "
                        f"Received {name}={value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a float in [0, 1). "
                         f"Received {name}={value!r}")
    return float(value)


def draw_dropout_mask(rate: float, shape, like: torch.Tensor) -> torch.Tensor:
    """Keras' dropout mask of ``shape``: 0 with probability ``rate``, else
    ``1 / (1 - rate)``, in ``like``'s dtype and device."""
    keep = torch.full(tuple(shape), 1.0 - rate, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - rate)


def forget_bias_ones(base: Callable, units: int, before: int) -> Callable:
    """Keras' ``unit_forget_bias`` initializer: ``base`` everywhere but ones for the
    ``units`` forget-gate entries that follow the first ``before`` (an LSTM's bias
    ``(4 * units,)``: ``before = units``; CuDNNLSTM's ``(8 * units,)``: ``5 * units``)."""
    def forget_ones(shape, dtype=None, device=None):
        after = int(np.prod(shape)) - before - units
        parts = [base((before,), dtype=dtype, device=device), torch.ones(units),
                 base((after,), dtype=dtype, device=device)]
        return torch.cat([torch.as_tensor(p, dtype=dtype, device=device) for p in parts])
    return forget_ones


def init_weight_arguments(layer: torch.nn.Module, args: Dict[str, Any]) -> None:
    """Resolve, check and set on ``layer`` the arguments of the weights and dropouts that
    Keras' recurrent layers and cells all take (read from the constructor's ``locals()``):
    ``use_bias``, the three initializers, regularizers and constraints,
    ``unit_forget_bias``, ``dropout``, ``recurrent_dropout``."""
    layer.use_bias = check_bool(args["use_bias"], "use_bias")
    for kind, module in (("initializer", _initializers), ("regularizer", _regularizers),
                         ("constraint", _constraints)):
        for weight in ("kernel", "recurrent", "bias"):
            arg = f"{weight}_{kind}"
            value = module.get(args[arg], arg)
            if value is None and kind == "initializer":
                raise ValueError(f"Invalid value for argument `{arg}`. Expected an "
                                 f"initializer. Received {arg}=None")
            setattr(layer, arg, value)
    layer.unit_forget_bias = check_bool(args["unit_forget_bias"], "unit_forget_bias")
    layer.dropout = _rate(args["dropout"], "dropout")
    layer.recurrent_dropout = _rate(args["recurrent_dropout"], "recurrent_dropout")


def recurrent_repr(layer: torch.nn.Module, parts: List[str], activations: Dict[str, str],
                   flags: Sequence[str] = ()) -> str:
    """``extra_repr`` of a recurrent layer or cell: ``parts`` (its own leading items), the
    ``activations`` not at their defaults (name: default; an absent one is skipped), the
    ``flags`` that are set, then ``use_bias``, the dropouts and the dtype when not at
    their defaults, and the name."""
    for arg, default in activations.items():
        fn = getattr(layer, arg, None)
        if fn is None:  # SimpleRNN has no recurrent activation
            continue
        value = _activations.serialize(fn)
        if value != default:
            parts.append(f"{arg}={value!r}")
    for arg in flags:
        if getattr(layer, arg):
            parts.append(f"{arg}=True")
    if not getattr(layer, "use_bias", True):
        parts.append("use_bias=False")
    for arg in ("dropout", "recurrent_dropout"):
        if getattr(layer, arg, 0):
            parts.append(f"{arg}={getattr(layer, arg)}")
    if layer.dtype_policy.name != "float32":
        parts.append(f"dtype={layer.dtype_policy.name!r}")
    parts.append(f"name={layer.name!r}")
    return ", ".join(parts)


def check_state_kept_eagerly(layer: torch.nn.Module) -> None:
    """A stateful layer keeps its last states between calls: a graph being exported
    (``torch.export``, the ONNX exporters, ``torch.jit.trace``) would freeze the example's
    states into it, so it is refused, naming the layer."""
    if _graphs.recording():
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) is stateful: its "
                         "states carry over between calls, which an exported graph does "
                         "not keep; export the model with stateful=False and pass the "
                         "states as initial_state")


def check_resettable(layer: torch.nn.Module, batch_known: bool) -> None:
    """``reset_states``' checks: a stateful layer whose batch size is known."""
    if not layer.stateful:
        raise AttributeError("Layer must be stateful.")
    if not batch_known:
        raise ValueError("If a RNN is stateful, it needs to know its batch size. Specify "
                         "the batch size of your input tensors with `batch_input_shape` "
                         "(or `input_shape` and `batch_size`), or call the layer once.")


def reset_state_values(layer: torch.nn.Module, states: Sequence[Any],
                       shapes: Sequence[Tuple[int, ...]], dtype, device) -> List[torch.Tensor]:
    """``reset_states(states)``' values: each of ``states`` checked against ``shapes``,
    detached copies in ``dtype`` on ``device``."""
    if len(states) != len(shapes):
        raise ValueError(f"Layer {layer.name} expects {len(shapes)} states, but it "
                         f"received {len(states)} state values.")
    values = []
    for index, (value, shape) in enumerate(zip(states, shapes)):
        value = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor)
                                else value).detach()
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"State {index} is incompatible with layer {layer.name}: "
                             f"expected shape={tuple(shape)}, found shape="
                             f"{tuple(value.shape)}")
        values.append(value.to(dtype=dtype, device=device).clone())
    return values


def split_state_inputs(name: str, inputs: Any, initial_state: Any) -> Tuple[Any, Any]:
    """``(inputs, initial_state)`` of a recurrent layer's call: tf-keras calls a layer given
    ``initial_state`` on one list ``[inputs, *states]`` (what a saved model's node holds),
    which is split here; a tensor passes through."""
    if not isinstance(inputs, (list, tuple)):
        return inputs, initial_state
    if not inputs or initial_state is not None:
        raise ValueError(f"Layer {name!r} takes its input tensor, or one list [inputs, "
                         f"*initial_state] (then no initial_state argument). Received a "
                         f"list of {len(inputs)}"
                         f"{' and initial_state' if initial_state is not None else ''}")
    return inputs[0], (list(inputs[1:]) or None)


def first_shape(shape: Any) -> Any:
    """The input's shape from a build or output-shape query on ``[inputs, *states]``."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return tuple(shape[0])
    return shape


class _RecurrentStates:
    """What Keras' recurrent layers share (ConvLSTM here; LSTM, GRU, SimpleRNN in
    :mod:`sepconv.layers.recurrent`): the arguments they all take (``_init_recurrent``), the
    states a stateful layer keeps (non-persistent
    buffers ``STATE_NAMES``), ``states`` / ``reset_states``, the check of a call's
    ``initial_state``, ``return_state`` and one activity penalty per returned tensor.

    The layer provides ``stateful``, ``return_state``, ``kernel``, ``_stateful_shape``
    (the input shape a stateful layer is fixed to, or None) and ``_state_shape(shape)``
    (a state's shape for inputs of ``shape``)."""

    STATE_NAMES: Tuple[str, ...] = ("state_h", "state_c")
    _STATE_LIST = "[h, c]"

    #: Keras' RNNs take a timestep mask (``forward(..., mask=)``).
    supports_masking = True
    #: tf-keras' ``zero_output_for_mask``: zeros (not the previous output) at masked
    #: steps; ``Bidirectional`` sets it to ``return_sequences`` on its layers.
    zero_output_for_mask = False

    def _build_checked(self, input_shape, device) -> None:
        super()._build_checked(first_shape(input_shape), device)

    def compute_mask(self, inputs, mask=None):
        """tf-keras' ``RNN.compute_mask``: the (first) input mask with
        ``return_sequences``, else ``None``; with ``return_state`` a list that adds
        ``None`` for each state."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.STATE_NAMES)
        return output_mask

    def _init_recurrent(self, args: Dict[str, Any]) -> None:
        """Resolve and check the constructor arguments every Keras recurrent layer has (read
        from the constructor's ``locals()``: the three initializers, regularizers and
        constraints, ``use_bias``, ``unit_forget_bias``, the dropouts, ``return_sequences``,
        ``return_state``, ``go_backwards``, ``stateful``) and set up the kept states."""
        init_weight_arguments(self, args)
        for arg in ("return_sequences", "return_state", "go_backwards", "stateful"):
            setattr(self, arg, check_bool(args[arg], arg))
        self._activity_losses: List[torch.Tensor] = []
        #: the input shape a stateful layer is fixed to: (batch, None, ...)
        self._stateful_shape: Optional[Tuple] = None
        for name in self.STATE_NAMES:
            self.register_buffer(name, None, persistent=False)

    @property
    def states(self) -> Optional[List[torch.Tensor]]:
        """A stateful layer's states (None before any call or reset)."""
        if getattr(self, self.STATE_NAMES[0]) is None:
            return None
        return [getattr(self, name) for name in self.STATE_NAMES]

    def reset_states(self, states=None) -> None:
        """Zero a stateful layer's states, or set them to ``states`` (a list)."""
        check_resettable(self, self._stateful_shape is not None)
        shape = self._state_shape(self._stateful_shape)
        dtype, device = self.dtype_policy.compute, self.kernel.device
        count = len(self.STATE_NAMES)
        if states is None:
            for name in self.STATE_NAMES:
                setattr(self, name, torch.zeros(shape, dtype=dtype, device=device))
            return
        if not isinstance(states, (list, tuple)):
            states = [states]
        values = reset_state_values(self, states, [shape] * count, dtype, device)
        for name, value in zip(self.STATE_NAMES, values):
            setattr(self, name, value)

    def _call_state(self, initial_state, state_shape, x: torch.Tensor):
        """The states a call starts from: ``initial_state`` checked against
        ``state_shape``, else a stateful layer's kept states, else None (zeros)."""
        count = len(self.STATE_NAMES)
        if initial_state is None:
            kept = self.states if self.stateful else None
            return None if kept is None else [s.to(x.dtype) for s in kept]
        if count == 1 and isinstance(initial_state, (torch.Tensor, np.ndarray)):
            initial_state = [initial_state]
        if isinstance(initial_state, (torch.Tensor, np.ndarray)) or \
                not isinstance(initial_state, (list, tuple)) or len(initial_state) != count:
            raise ValueError("Invalid value for argument `initial_state`. Expected a list "
                             f"{self._STATE_LIST} of {count} tensor(s) of shape "
                             f"{state_shape}.")
        state = []
        for s in initial_state:
            s = torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s,
                                device=x.device)
            if tuple(s.shape) != tuple(state_shape):
                raise ValueError("Invalid value for argument `initial_state`. Expected "
                                 f"states of shape {tuple(state_shape)}. Received "
                                 f"{[tuple(np.shape(t)) for t in initial_state]}")
            state.append(s.to(x.dtype))
        return state

    def _call_result(self, output: torch.Tensor, states):
        """Keep a stateful layer's last states (detached: truncated backpropagation through
        time), record the activity penalties and return ``output`` or, with
        ``return_state``, ``[output, *states]``."""
        if self.stateful:
            check_state_kept_eagerly(self)
            for name, value in zip(self.STATE_NAMES, states):
                setattr(self, name, value.detach())
        outputs = [output] + list(states) if self.return_state else [output]
        self._activity_losses = [] if self.activity_regularizer is None else \
            [self.activity_regularizer(y) / y.shape[0] for y in outputs]
        return outputs if self.return_state else output

    def _recurrent_repr(self, parts: List[str], recurrent_default: str) -> str:
        """``extra_repr`` from ``parts`` (the layer's own leading items) and the arguments
        every recurrent layer shows when not at their defaults."""
        return recurrent_repr(self, parts, {"activation": "tanh",
                                            "recurrent_activation": recurrent_default},
                              ("return_sequences", "return_state", "go_backwards",
                               "stateful"))

    @property
    def losses(self) -> List[torch.Tensor]:
        """The last call's activity penalties (one per returned tensor), then the weight
        penalties of the regularizers (tf-keras' order)."""
        out = list(self._activity_losses)
        out += [reg(getattr(self, name)) for name, reg in self._regularized.items()
                if self.built]
        return out


class _ConvLSTM(_RecurrentStates, Layer):
    """Keras' convolutional LSTM of rank ``RANK`` (the public classes set it).

    Input: ``(batch, time, *spatial, channels)`` for ``data_format="channels_last"`` (the
    default), ``(batch, time, channels, *spatial)`` for ``"channels_first"``; ``spatial`` is
    ``(steps,)``, ``(rows, cols)`` or ``(depth, rows, cols)``.  Per time step, with gates in
    Keras' order i, f, c, o::

        z = conv(x_t, kernel) + bias + conv_same(h, recurrent_kernel)
        c = ra(z_f) * c + ra(z_i) * a(z_c);   h = ra(z_o) * a(c)

    where ``a = activation`` (tanh) and ``ra = recurrent_activation`` (tf-keras'
    ``hard_sigmoid = clip(0.2 x + 0.5, 0, 1)``).  The input convolution takes ``strides``,
    ``padding`` (``"valid"``, ``"same"``; TensorFlow's arithmetic) and ``dilation_rate``;
    the recurrent one is always stride 1, dilation 1, ``"same"``.

    Output: the last ``h``, ``(batch, *out_spatial, filters)`` (or channels_first), or with
    ``return_sequences=True`` every step's, ``(batch, time, *out_spatial, filters)``; with
    ``go_backwards`` the steps run last to first and the sequence comes in that processing
    order, as in tf-keras.  With ``return_state=True`` the call returns the list
    ``[output, h, c]``.

    Weights, Keras' shapes and ``get_weights()`` order: ``kernel``
    ``(*kernel_size, channels, 4 * filters)``, ``recurrent_kernel``
    ``(*kernel_size, filters, 4 * filters)``, ``bias`` ``(4 * filters,)`` (absent when
    ``use_bias=False``; ``unit_forget_bias`` sets its forget part to ones at creation).

    ``forward(inputs, mask=None, training=None, initial_state=None)`` (Keras' call
    arguments): ``mask`` is ``(batch, time)`` booleans (a masked step keeps the states and
    repeats the previous output, as tf-keras), or ``Masking``'s ``(batch, time,
    *spatial)``, applied per output position as tf-keras 2.21 does (it fits where the
    output keeps the input's spatial shape, ``padding="same"`` with strides 1; other
    shapes are refused, tf-keras fails on them too); ``initial_state`` is ``[h, c]`` in the state
    shape above.  ``stateful=True`` keeps the last states (detached from the
    graph: truncated backpropagation through time) as the next call's initial state; the
    batch size (and spatial shape) are fixed by ``batch_input_shape`` / ``batch_size`` or
    else by the first call, as tf-keras does eagerly; ``reset_states(states=None)`` zeroes
    them or sets given values.

    ``dropout`` / ``recurrent_dropout`` follow Keras: one mask per gate drawn once per call
    and shared by every time step, on the input and on ``h``.  They act in training mode:
    the module's ``train()`` / ``eval()`` (torch modules start in training mode: call
    ``eval()`` for inference) unless ``training=`` is given to the call.  Rates must lie in
    [0, 1): tf-keras clips other values silently and at 1.0 drops nothing; sepconv raises.

    The activity regularizer applies to each returned tensor (output, and ``h``, ``c``
    with ``return_state``), each penalty divided by the batch size, as in tf-keras.
    """

    RANK = 2
    WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="hard_sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, dropout=0.0,
                 recurrent_dropout=0.0, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights, activity_regularizer=activity_regularizer)
        rank = self.RANK
        self.filters = check_count(filters, "filters")
        self.kernel_size, self.strides, self.dilation_rate = check_conv_geometry(
            kernel_size, strides, dilation_rate, rank)
        # tf-keras accepts "causal" here, then fails at the first call.
        self.padding = check_padding(padding, ("valid", "same"))
        self.data_format = check_data_format(data_format)
        self.activation = _activations.get(activation, "activation")
        self.recurrent_activation = _activations.get(recurrent_activation,
                                                     "recurrent_activation")
        self._init_recurrent(locals())
        self.input_channels: Optional[int] = None
        if self.batch_input_shape is not None:
            arg, value = self._shape_argument
            if len(self.batch_input_shape) != rank + 3:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected the "
                                 f"shape of {self._layout()} for a {rank}D ConvLSTM (without "
                                 f"batch for `input_shape`). Received {arg}={value}")
            self._check_shape_channels(self._output_spatial)
        self._finish_init()

    # -- shapes ----------------------------------------------------------------------------
    @property
    def _channels_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 2

    def _spatial(self, shape) -> Tuple:
        return tuple(shape[2:-1] if self.data_format == "channels_last" else shape[3:])

    def _layout(self) -> str:
        layout = _functional._layout_nd(self.RANK, self.data_format == "channels_last")
        return layout.replace("(batch, ", "(batch, time, ")

    def _output_spatial(self, shape) -> Tuple[Optional[int], ...]:
        out = _padding.conv_output_shape(self._spatial(shape), self.kernel_size,
                                         self.strides, self.dilation_rate, self.padding)
        if any(n is not None and n <= 0 for n in out):
            raise ValueError(f"Input of shape {tuple(shape)} is too small for layer "
                             f"{self.name!r} (kernel_size={self.kernel_size}, dilation_rate="
                             f"{self.dilation_rate}, padding={self.padding!r}): the output "
                             f"would have shape {out}")
        return out

    def _state_shape(self, shape) -> Tuple[Optional[int], ...]:
        spatial = self._output_spatial(shape)
        if self.data_format == "channels_last":
            return (shape[0],) + spatial + (self.filters,)
        return (shape[0], self.filters) + spatial

    def compute_output_shape(self, input_shape):
        """``(batch, time, *spatial, channels)`` -> the output shape (channels_first alike);
        a list ``[output, h, c]`` of shapes with ``return_state``.  Entries may be None."""
        shape = tuple(first_shape(input_shape))
        if len(shape) != self.RANK + 3:
            raise ValueError(f"Expected an input shape of rank {self.RANK + 3}, "
                             f"{self._layout()}. Received input_shape={shape}")
        state = self._state_shape(shape)
        output = (shape[0], shape[1]) + state[1:] if self.return_sequences else state
        return [output, state, state] if self.return_state else output

    # -- building --------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        channels = self._input_channels(input_shape, self.RANK + 3)
        self.input_channels = channels
        f = self.filters
        self.add_weight("kernel", self.kernel_size + (channels, 4 * f),
                        self.kernel_initializer, self.kernel_regularizer,
                        self.kernel_constraint, device)
        self.add_weight("recurrent_kernel", self.kernel_size + (f, 4 * f),
                        self.recurrent_initializer, self.recurrent_regularizer,
                        self.recurrent_constraint, device)
        if self.use_bias:
            init = forget_bias_ones(self.bias_initializer, f, f) if self.unit_forget_bias \
                else self.bias_initializer
            self.add_weight("bias", (4 * f,), init, self.bias_regularizer,
                            self.bias_constraint, device)
        if self.stateful and input_shape[0] is not None and \
                None not in self._spatial(input_shape):
            self._fix_stateful_shape(input_shape)

    def _fix_stateful_shape(self, shape) -> None:
        shape = tuple(shape)
        self._stateful_shape = (shape[0], None) + shape[2:]

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if not weights or len(getattr(weights[0], "shape", ())) != self.RANK + 2:
            return None
        channels = int(weights[0].shape[-2])
        spatial = (None,) * self.RANK
        if self.data_format == "channels_last":
            return (None, None) + spatial + (channels,)
        return (None, None, channels) + spatial

    def _check_input(self, shape) -> None:
        if len(shape) != self.RANK + 3 or shape[self._channels_axis] != self.input_channels:
            raise ValueError(f"Layer {self.name!r} expects input of rank {self.RANK + 3}, "
                             f"{self._layout()}, with {self.input_channels} channels. "
                             f"Received input of shape {shape}")
        if shape[1] == 0:
            raise ValueError(f"Layer {self.name!r} received input of shape {shape} with no "
                             f"time steps")
        self._output_spatial(shape)
        if self.stateful:
            if self._stateful_shape is None:
                self._fix_stateful_shape(shape)
            expected = self._stateful_shape
            if shape[0] != expected[0] or shape[2:] != expected[2:]:
                raise ValueError(f"Layer {self.name!r} is stateful: its input shape is fixed "
                                 f"to {expected} (batch_input_shape or the first call). "
                                 f"Received input of shape {shape}")

    # -- computing -------------------------------------------------------------------------
    def _masks(self, x: torch.Tensor, state_shape: Tuple[int, ...]):
        """Keras' dropout masks: 4 per call (one per gate), values 0 or 1 / (1 - rate)."""
        def draw(rate, shape):
            return draw_dropout_mask(rate, (4,) + tuple(shape), x)
        step_shape = (x.shape[0],) + tuple(x.shape[2:])
        mask = draw(self.dropout, step_shape) if self.dropout > 0 else None
        rmask = draw(self.recurrent_dropout, state_shape) if self.recurrent_dropout > 0 \
            else None
        return mask, rmask

    def forward(self, inputs, mask=None, training=None, initial_state=None):
        """Keras' call arguments.  ``inputs``: ``(batch, time, *spatial, channels)``
        (channels_last) or ``(batch, time, channels, *spatial)``; a tensor or numpy array.
        ``mask``: ``(batch, time)`` booleans (False: skip the step, as Keras' masking),
        or ``(batch, time, *spatial)`` as ``Masking`` makes it: per output position (see
        :func:`sepconv.functional.conv_lstm`);
        ``training``: overrides ``self.training``; ``initial_state``: ``[h, c]`` (or
        ``inputs`` the list ``[inputs, h, c]``, as tf-keras calls it)."""
        inputs, initial_state = split_state_inputs(self.name, inputs, initial_state)
        x = self._prepare_input(inputs)
        if isinstance(mask, (list, tuple)):  # tf-keras takes the first of a list
            mask = mask[0] if mask else None
        if mask is not None:  # its shape is checked by functional.conv_lstm
            mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor)
                                   else mask, device=x.device)
        training = self.training if training is None else bool(training)
        state_shape = self._state_shape(tuple(x.shape))
        state = self._call_state(initial_state, state_shape, x)
        dropout_mask, rmask = self._masks(x, state_shape) if training else (None, None)
        output, h, c = self._recurrence(x, state, self.return_sequences, dropout_mask,
                                        rmask, mask)
        return self._call_result(output, [h, c])

    def _recurrence(self, x, state, return_sequences, dropout_mask=None, rmask=None,
                    mask=None):
        """:func:`sepconv.functional.conv_lstm` with this layer's weights and arguments:
        ``(output, h, c)``."""
        return _functional.conv_lstm(
            x, self._weight("kernel"), self._weight("recurrent_kernel"),
            self._weight("bias") if self.use_bias else None, strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format, activation=self.activation,
            recurrent_activation=self.recurrent_activation, initial_state=state,
            go_backwards=self.go_backwards, return_sequences=return_sequences,
            dropout_mask=dropout_mask, recurrent_dropout_mask=rmask, mask=mask)

    def _stream_chunk(self, x: torch.Tensor, state):
        """Every step's output ``(batch, time, *out_spatial, filters)`` (channels_first
        alike) and the last states, from ``state`` (None: zeros), without dropout or mask:
        ``(output, h, c)``.  What :func:`sepconv.stream` runs on each chunk (as for
        :class:`sepconv.LSTM`), whatever ``return_sequences``."""
        return self._recurrence(x, state, True)

    # -- Keras protocol --------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update({
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": False,
            "time_major": False, "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding,
            "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": _activations.serialize(self.activation),
            "recurrent_activation": _activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": serialize(self.kernel_initializer),
            "recurrent_initializer": serialize(self.recurrent_initializer),
            "bias_initializer": serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "recurrent_regularizer": serialize(self.recurrent_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "activity_regularizer": serialize(self.activity_regularizer),
            "kernel_constraint": serialize(self.kernel_constraint),
            "recurrent_constraint": serialize(self.recurrent_constraint),
            "bias_constraint": serialize(self.bias_constraint),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
        })
        return config

    def extra_repr(self) -> str:
        parts = self._geometry_repr([f"{self.input_channels if self.built else '?'}",
                                     f"{self.filters}", f"kernel_size={self.kernel_size}"])
        if self.data_format != "channels_last":
            parts.append(f"data_format={self.data_format!r}")
        return self._recurrent_repr(parts, "hard_sigmoid")


class ConvLSTM1D(_ConvLSTM):
    """Keras' ``ConvLSTM1D`` (R: ``layer_conv_lstm_1d``): input ``(batch, time, steps,
    channels)``; see :class:`sepconv.layers.conv_lstm._ConvLSTM` for the whole contract."""

    RANK = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation="tanh", recurrent_activation="hard_sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, dropout=0.0,
                 recurrent_dropout=0.0, input_shape=None, batch_input_shape=None,
                 batch_size=None, dtype=None, name=None, trainable=None, weights=None):
        super().__init__(**_arguments(locals()))


class ConvLSTM2D(_ConvLSTM):
    """Keras' ``ConvLSTM2D`` (R: ``layer_conv_lstm_2d``): input ``(batch, time, rows, cols,
    channels)``; see :class:`sepconv.layers.conv_lstm._ConvLSTM` for the whole contract."""

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), activation="tanh",
                 recurrent_activation="hard_sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, dropout=0.0, recurrent_dropout=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))


class ConvLSTM3D(_ConvLSTM):
    """Keras' ``ConvLSTM3D`` (R: ``layer_conv_lstm_3d``): input ``(batch, time, depth, rows,
    cols, channels)``; see :class:`sepconv.layers.conv_lstm._ConvLSTM` for the whole
    contract."""

    RANK = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1, 1), activation="tanh",
                 recurrent_activation="hard_sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, dropout=0.0, recurrent_dropout=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))
