"""Keras' generic recurrent layer and its cells: ``RNN``, ``SimpleRNNCell``, ``LSTMCell``,
``GRUCell``, ``StackedRNNCells`` (R: ``layer_rnn``, ``layer_simple_rnn_cell``,
``layer_lstm_cell``, ``layer_gru_cell``, ``layer_stacked_rnn_cells``), tf-keras 2.21's
arguments and numbers.

One recurrence each: a cell's step is :func:`sepconv.functional.lstm_step` /
:func:`~sepconv.functional.gru_step` / :func:`~sepconv.functional.simple_rnn_step`, the
steps :func:`sepconv.functional.lstm` / ``gru`` / ``simple_rnn`` (what ``LSTM``, ``GRU``,
``SimpleRNN`` run) take at every step off their fused path.  ``RNN`` over Keras' own cells
(also stacked) runs those whole-sequence functions, fused path included, so
``RNN(LSTMCell(u))`` computes exactly what ``LSTM(u)`` does; over any other cell it calls
the cell step by step, as Keras does.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import activations as _activations
from .. import functional as _functional
from .base import DTypePolicy, Layer, check_bool, check_count, layer_from_config
from .conv_lstm import (_arguments, check_resettable, check_state_kept_eagerly,
                        draw_dropout_mask, first_shape, init_weight_arguments, recurrent_repr,
                        reset_state_values, split_state_inputs)
from .recurrent import GRU, LSTM, _RecurrentWeights


def _keras_entry(layer: torch.nn.Module) -> Dict[str, Any]:
    """A nested layer's config entry as tf-keras 2.21 writes it."""
    return {"module": "keras.layers", "class_name": type(layer).__name__,
            "config": layer.get_config(), "registered_name": None}


# -- the cells ---------------------------------------------------------------------------------
class _Cell(_RecurrentWeights, Layer):
    """Keras' recurrent cells: one step ``output, new_states = cell(x_t, states)``.

    ``x_t`` ``(batch, features)``; ``states`` the list of states (``[h]``, LSTM ``[h, c]``)
    each ``(batch, units)``, or a single tensor for a one-state cell (then the new state
    comes back as a tensor too, as tf-keras' cells do).  ``state_size`` / ``output_size``
    and ``get_initial_state(inputs=None, batch_size=None, dtype=None)`` (zeros) as in Keras.
    Weights, Keras' shapes and ``get_weights()`` order: ``kernel`` ``(features, GATES *
    units)``, ``recurrent_kernel`` ``(units, GATES * units)``, ``bias`` (absent when
    ``use_bias=False``); ``input_shape`` here is the step's ``(features,)``.

    ``dropout`` / ``recurrent_dropout`` act in training mode (``train()`` or
    ``training=True``).  Called alone, the cell draws new masks at every call; inside
    :class:`RNN` it draws them once per call of the layer, as tf-keras' cells do (one input
    mask for every gate without ``recurrent_dropout``, tf-keras' ``implementation=2``;
    with it, one mask per gate on the input and on ``h``, ``implementation=1``).
    """

    STATE_COUNT = 1
    _INPUT_RANK = 2

    def __init__(self, units, activation="tanh", recurrent_activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=False, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, reset_after=True, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        self.units = check_count(units, "units")
        self.activation = _activations.get(activation, "activation")
        self.recurrent_activation = None if self._DEFAULT_RECURRENT_ACTIVATION is None else \
            _activations.get(recurrent_activation, "recurrent_activation")
        init_weight_arguments(self, locals())
        self.reset_after = check_bool(reset_after, "reset_after")
        self.input_dim: Optional[int] = None
        if self.batch_input_shape is not None and len(self.batch_input_shape) != 2:
            arg, value = self._shape_argument
            raise ValueError(f"Invalid value for argument `{arg}`. Expected the shape "
                             f"(features,) of one step's input (without the batch axis). "
                             f"Received {arg}={value}")
        self._finish_init()

    # -- Keras' cell protocol ----------------------------------------------------------------
    @property
    def state_size(self):
        """``units`` (LSTM: ``[units, units]``), as Keras' cells say."""
        return [self.units] * self.STATE_COUNT if self.STATE_COUNT > 1 else self.units

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zero states: a list for LSTM, one tensor for GRU / SimpleRNN (tf-keras)."""
        batch = batch_size if inputs is None else int(inputs.shape[0])
        dtype = dtype or self.dtype_policy.compute
        if isinstance(dtype, str):
            dtype = DTypePolicy(dtype).compute
        device = self.kernel.device if self.built else None
        zeros = [torch.zeros((batch, self.units), dtype=dtype, device=device)
                 for _ in range(self.STATE_COUNT)]
        return zeros if self.STATE_COUNT > 1 else zeros[0]

    # -- building ----------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        if input_shape[-1] is None:
            raise ValueError(f"The last dimension of the inputs of cell {self.name!r} should "
                             f"be defined. Received input_shape={tuple(input_shape)}")
        self.input_dim = check_count(input_shape[-1], "input features")
        self._build_weights(device)

    def _check_input(self, shape) -> None:
        if len(shape) != 2 or shape[1] != self.input_dim:
            raise ValueError(f"Cell {self.name!r} expects one step's input of shape (batch, "
                             f"{self.input_dim}). Received input of shape {shape}")

    # -- computing ---------------------------------------------------------------------------
    def _step_masks(self, x: torch.Tensor, training: bool):
        """One call's dropout masks ``(GATES, batch, features)`` / ``(GATES, batch,
        units)``: the same mask for every gate without ``recurrent_dropout``."""
        if not training or (self.dropout == 0 and self.recurrent_dropout == 0):
            return None, None
        gates = self.GATES if self.recurrent_dropout > 0 else 1
        batch = x.shape[0]
        mask = rmask = None
        if self.dropout > 0:
            mask = draw_dropout_mask(self.dropout, (gates, batch, x.shape[1]), x)
            mask = mask.expand(self.GATES, -1, -1)
        if self.recurrent_dropout > 0:
            rmask = draw_dropout_mask(self.recurrent_dropout, (self.GATES, batch, self.units),
                                      x)
        return mask, rmask

    def forward(self, inputs, states, training=None):
        """Keras' cell call: ``output, new_states = cell(inputs, states)``."""
        x = self._prepare_input(inputs)
        nested = isinstance(states, (list, tuple))
        state = list(states) if nested else [states]
        if len(state) != self.STATE_COUNT:
            raise ValueError(f"Invalid value for argument `states`. Cell {self.name!r} "
                             f"takes {self.STATE_COUNT} state(s), each (batch, {self.units}). "
                             f"Received {len(state)}")
        state = [torch.as_tensor(np.asarray(s)) if not isinstance(s, torch.Tensor) else s
                 for s in state]
        for s in state:
            if tuple(s.shape) != (x.shape[0], self.units):
                raise ValueError(f"Invalid value for argument `states`. Cell {self.name!r} "
                                 f"expects states of shape {(x.shape[0], self.units)}. "
                                 f"Received {[tuple(t.shape) for t in state]}")
        state = [s.to(x.dtype) for s in state]
        training = self.training if training is None else bool(training)
        mask, rmask = self._step_masks(x, training)
        kernel, recurrent_kernel, bias = self._weights()
        zx = _functional.recurrent_input_projection(x, kernel, self._input_bias(bias),
                                                    self.GATES, mask)
        new = self._step(zx, state, recurrent_kernel, bias, rmask)
        if nested or self.STATE_COUNT > 1:
            return new[0], list(new)
        return new[0], new[0]

    def _input_bias(self, bias):
        return bias

    def _sequence(self, x, state, training: bool, mask, return_sequences: bool,
                  zero_output_for_mask: bool):
        """The whole-sequence recurrence of this cell (what :class:`RNN` runs):
        ``(output, *states)``."""
        x, dmask, rmask = self._dropout_masks(x, training)
        return self._recurrence(x, *self._weights(), initial_state=state,
                                return_sequences=return_sequences, dropout_mask=dmask,
                                recurrent_dropout_mask=rmask, mask=mask,
                                zero_output_for_mask=zero_output_for_mask)

    # -- Keras protocol ----------------------------------------------------------------------
    def get_config(self) -> Dict[str, Any]:
        config = self.base_config()
        config.update(self._step_config())
        return config

    def extra_repr(self) -> str:
        return recurrent_repr(self, [f"{self.input_dim if self.built else '?'}",
                                     f"{self.units}"], {"activation": "tanh"})


class SimpleRNNCell(_Cell):
    """Keras' ``SimpleRNNCell`` (R: ``layer_simple_rnn_cell``): ``h = a(x_t @ kernel +
    bias + h @ recurrent_kernel)``, the step of :class:`sepconv.SimpleRNN`.  See
    :class:`sepconv.layers.rnn._Cell` for the cell protocol."""

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    def _step(self, zx, state, recurrent_kernel, bias, rmask):
        return _functional.simple_rnn_step(zx, state, recurrent_kernel, self.activation,
                                           rmask)

    def _recurrence(self, x, kernel, recurrent_kernel, bias, **kwargs):
        return _functional.simple_rnn(x, kernel, recurrent_kernel, bias,
                                      activation=self.activation, **kwargs)


class LSTMCell(_Cell):
    """Keras' ``LSTMCell`` (R: ``layer_lstm_cell``): the step of :class:`sepconv.LSTM`
    (gates i, f, c, o; states ``[h, c]``; ``unit_forget_bias`` sets the forget part of the
    bias to ones at creation).  See :class:`sepconv.layers.rnn._Cell`."""

    GATES = 4
    STATE_COUNT = 2
    _DEFAULT_RECURRENT_ACTIVATION = "sigmoid"
    _config_middle = LSTM._config_middle
    _config_end = LSTM._config_end

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    def _step(self, zx, state, recurrent_kernel, bias, rmask):
        return _functional.lstm_step(zx, state, recurrent_kernel, self.activation,
                                     self.recurrent_activation, rmask)

    def _recurrence(self, x, kernel, recurrent_kernel, bias, **kwargs):
        return _functional.lstm(x, kernel, recurrent_kernel, bias, activation=self.activation,
                                recurrent_activation=self.recurrent_activation, **kwargs)


class GRUCell(_Cell):
    """Keras' ``GRUCell`` (R: ``layer_gru_cell``): the step of :class:`sepconv.GRU`
    (gates z, r, h; ``reset_after=True``: bias ``(2, 3 * units)``, else ``(3 * units,)``).
    See :class:`sepconv.layers.rnn._Cell`."""

    GATES = 3
    _DEFAULT_RECURRENT_ACTIVATION = "sigmoid"
    _bias_shape = GRU._bias_shape
    _config_end = GRU._config_end

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, input_shape=None,
                 batch_input_shape=None, batch_size=None, dtype=None, name=None,
                 trainable=None, weights=None):
        super().__init__(**_arguments(locals()))

    def _input_bias(self, bias):
        return bias[0] if bias is not None and self.reset_after else bias

    def _step(self, zx, state, recurrent_kernel, bias, rmask):
        recurrent_bias = bias[1] if bias is not None and self.reset_after else None
        return _functional.gru_step(zx, state, recurrent_kernel, recurrent_bias,
                                    self.activation, self.recurrent_activation,
                                    self.reset_after, rmask)

    def _recurrence(self, x, kernel, recurrent_kernel, bias, **kwargs):
        return _functional.gru(x, kernel, recurrent_kernel, bias, activation=self.activation,
                               recurrent_activation=self.recurrent_activation,
                               reset_after=self.reset_after, **kwargs)


_KERAS_CELLS = (SimpleRNNCell, LSTMCell, GRUCell)


# -- cells as Keras sees them: state sizes, packing ---------------------------------------------
def _flat_sizes(state_size: Any, arg: str = "cell") -> List[int]:
    """A cell's ``state_size`` as the flat list of its states' sizes."""
    if isinstance(state_size, (list, tuple)):
        return [n for s in state_size for n in _flat_sizes(s, arg)]
    if isinstance(state_size, bool) or not isinstance(state_size, (int, np.integer)):
        raise ValueError(f"Invalid value for argument `{arg}`: sepconv's RNN takes cells "
                         f"whose `state_size` is an int or a (nested) list of ints. "
                         f"Received state_size={state_size!r}")
    return [int(state_size)]


def _pack(flat: List[torch.Tensor], structure: Any) -> Any:
    """``flat`` in the nesting of ``state_size``: a list at the top level (tf-keras' RNN
    hands cells their states as a list, ``[h]`` for one state)."""
    it = iter(flat)

    def pack(s):
        if isinstance(s, (list, tuple)):
            return [pack(v) for v in s]
        return next(it)
    return pack(structure) if isinstance(structure, (list, tuple)) else [next(it)]


def _flatten(states: Any) -> List[torch.Tensor]:
    if isinstance(states, (list, tuple)):
        return [t for s in states for t in _flatten(s)]
    return [states]


def _check_cell(cell: Any, arg: str = "cell") -> torch.nn.Module:
    cell = layer_from_config(cell, arg)
    if not isinstance(cell, torch.nn.Module) or not callable(getattr(cell, "forward", None)):
        raise ValueError(f"Invalid value for argument `{arg}`: it should be a cell, a torch "
                         f"module with a forward(inputs, states) method and a `state_size` "
                         f"attribute (or a list of them). Received {arg}={cell!r}")
    if not hasattr(cell, "state_size"):
        raise ValueError(f"Invalid value for argument `{arg}`: the RNN cell should have a "
                         f"`state_size` attribute (tuple of integers, one integer per RNN "
                         f"state). Received {arg}={cell!r}")
    _flat_sizes(cell.state_size, arg)
    return cell


class StackedRNNCells(Layer):
    """Keras' ``StackedRNNCells`` (R: ``layer_stacked_rnn_cells``): the ``cells`` one after
    the other at each step, each taking the previous one's output.  ``state_size`` lists
    the cells' state sizes; the call takes the states flat or nested per cell and returns
    ``(last cell's output, [each cell's new states])``.  Weights: the cells', in order.
    ``cells`` are Keras cells, their config dicts, or torch modules with ``state_size``
    and ``forward(inputs, states)`` (nests: a ``StackedRNNCells`` is a cell)."""

    def __init__(self, cells, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError(f"Invalid value for argument `cells`. Expected a non-empty list "
                             f"of RNN cells. Received cells={cells!r}")
        self.cells = torch.nn.ModuleList([_check_cell(c, "cells") for c in cells])
        if dtype is None and isinstance(self.cells[0], Layer):
            self.dtype_policy = DTypePolicy(self.cells[0].dtype_policy.name)
        if trainable is not None:
            self.trainable = self._trainable
        self._finish_init()
        if not self.built and all(getattr(c, "built", True) for c in self.cells):
            self.built = True

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freezing the stack freezes every cell (they sit in a ModuleList)."""
        Layer.trainable.fset(self, value)
        for cell in self.cells:
            if isinstance(cell, Layer):
                cell.trainable = self._trainable
            else:
                cell.requires_grad_(self._trainable)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if isinstance(self.cells[0], Layer):
            self.dtype_policy = DTypePolicy(self.cells[0].dtype_policy.name)
        return out

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        last = self.cells[-1]
        if hasattr(last, "output_size"):
            return last.output_size
        return _flat_sizes(last.state_size)[0]

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        return [c.get_initial_state(inputs=inputs, batch_size=batch_size, dtype=dtype)
                for c in self.cells]

    def build(self, input_shape, device=None) -> None:
        shape = tuple(input_shape)
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell._build_checked(shape, device=device)
            out = getattr(cell, "output_size", None)
            if out is None:
                out = _flat_sizes(cell.state_size)[0]
            shape = shape[:-1] + (out,)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        return self.cells[0]._input_shape_from_weights(weights) \
            if isinstance(self.cells[0], Layer) else None

    def forward(self, inputs, states, training=None):
        if not self.built:
            x = inputs if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
            self._build_checked(tuple(x.shape), device=getattr(x, "device", None))
        flat = _flatten(states)
        sizes = [len(_flat_sizes(c.state_size)) for c in self.cells]
        if len(flat) != sum(sizes):
            raise ValueError(f"Invalid value for argument `states`. {self.name!r} takes "
                             f"{sum(sizes)} states ({sizes} per cell). Received {len(flat)}")
        new_states = []
        x, start = inputs, 0
        for cell, n in zip(self.cells, sizes):
            cell_states = _pack(flat[start:start + n], cell.state_size)
            start += n
            x, new = _call_cell(cell, x, cell_states, training)
            new_states.append(new if isinstance(new, (list, tuple)) else [new])
        return x, new_states

    @property
    def weights(self):
        return [w for c in self.cells for w in _cell_weights(c)]

    def get_weights(self):
        return [w for c in self.cells for w in c.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        self._build_from_weights(weights)
        counts = [len(_cell_weights(c)) for c in self.cells]
        if len(weights) != sum(counts):
            raise ValueError(f"Layer {self.name!r} expects {sum(counts)} weights ({counts} "
                             f"per cell), but received {len(weights)} weights")
        start = 0
        for cell, n in zip(self.cells, counts):
            cell.set_weights(weights[start:start + n])
            start += n

    def h5_weight_names(self):
        return [f"{c.name}/{n}" for c in self.cells for n in _h5_names(c)]

    def constrained_parameters(self):
        return []

    @property
    def losses(self):
        return []

    def get_config(self) -> Dict[str, Any]:
        return {**self.base_config(), "cells": [_keras_entry(c) for c in self.cells]}

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _cell_weights(cell) -> list:
    return list(cell.weights) if hasattr(cell, "weights") else list(cell.parameters())


def _h5_names(cell) -> List[str]:
    if hasattr(cell, "h5_weight_names"):
        return list(cell.h5_weight_names())
    return list(getattr(cell, "_weight_order", []))


def _takes(module, keyword: str) -> bool:
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call_cell(cell, x, states, training, constants=None):
    kwargs = {}
    if training is not None and _takes(cell, "training"):
        kwargs["training"] = training
    if constants is not None:
        kwargs["constants"] = constants
    out = cell(x, states, **kwargs)
    if not isinstance(out, (list, tuple)) or len(out) != 2:
        raise ValueError(f"The RNN cell {type(cell).__name__} should return (output, "
                         f"new_states). Received {type(out).__name__}")
    return out


def _keras_cells(cell) -> Optional[List[_Cell]]:
    """The Keras cells ``cell`` stands for, in order (stacks flattened), when all are
    sepconv's own (then :class:`RNN` runs the whole-sequence recurrences); else None."""
    if type(cell) in _KERAS_CELLS:
        return [cell]
    if type(cell) is StackedRNNCells:
        out = []
        for c in cell.cells:
            inner = _keras_cells(c)
            if inner is None:
                return None
            out += inner
        return out
    return None


# -- the layer ---------------------------------------------------------------------------------
class RNN(Layer):
    """Keras' ``RNN`` (R: ``layer_rnn``): runs ``cell`` over the steps of ``(batch, time,
    features)`` inputs (``time_major=True``: ``(time, batch, features)``, outputs and masks
    time-major too).

    ``cell``: a Keras cell (:class:`SimpleRNNCell`, :class:`LSTMCell`, :class:`GRUCell`,
    :class:`StackedRNNCells`), a list of cells (stacked), a cell's config dict, or any
    torch module with ``state_size`` (an int or a list of ints) and ``forward(inputs,
    states) -> (output, new_states)``, as Keras documents custom cells (``training=`` is
    passed where its ``forward`` takes it; ``output_size``, else the first state's size,
    gives the output's last axis).  Over Keras' own cells (stacked too) the layer runs
    :func:`sepconv.functional.lstm` / ``gru`` / ``simple_rnn`` on the cells' weights, the
    recurrences of ``LSTM`` / ``GRU`` / ``SimpleRNN``, fused path included: ``RNN(
    LSTMCell(u))`` gives ``LSTM(u)``'s numbers.  Other cells are called step by step.

    Output: the last step's output, or every step's with ``return_sequences``
    (``go_backwards``: in processing order, as tf-keras); ``return_state`` adds the final
    states as tf-keras nests them (``[output, h, c]`` for an LSTMCell; a stack: one entry
    per cell, a tensor for a one-state cell, a list for LSTM: ``[output, h_gru, [h_lstm,
    c_lstm]]``; ``compute_output_shape`` / ``compute_mask`` list them flat, as tf-keras'
    shapes do).  ``forward(inputs, mask=None, training=None, initial_state=None,
    constants=None)``: ``mask`` ``(batch, time)`` booleans: a masked step keeps every
    state and outputs the previous output (zeros with ``zero_output_for_mask``);
    ``initial_state`` the states, flat or nested per cell as tf-keras takes them; ``constants``
    (tf-keras) are passed to the cell's ``forward(..., constants=)`` at every step, for
    cells that take them (Keras' cells do not: ``ValueError``).  ``stateful=True`` keeps the
    final states (detached) for the next call; ``reset_states(states=None)``.  ``unroll``
    is accepted and changes nothing.  Weights: the cell's (``get_weights`` in Keras'
    order); the cell's penalties are in its own ``losses`` (and in
    :func:`sepconv.regularization_loss`).
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, time_major=False, zero_output_for_mask=False,
                 input_shape=None, batch_input_shape=None, batch_size=None, dtype=None,
                 name=None, trainable=None, weights=None):
        super().__init__(input_shape=input_shape, batch_input_shape=batch_input_shape,
                         batch_size=batch_size, dtype=dtype, name=name, trainable=trainable,
                         weights=weights)
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        self.cell = _check_cell(cell)
        for arg in ("return_sequences", "return_state", "go_backwards", "stateful",
                    "unroll", "time_major", "zero_output_for_mask"):
            setattr(self, arg, check_bool(locals()[arg], arg))
        if dtype is None and isinstance(self.cell, Layer):
            self.dtype_policy = DTypePolicy(self.cell.dtype_policy.name)
        self._sizes = _flat_sizes(self.cell.state_size)
        self._kept: Optional[List[torch.Tensor]] = None
        self._stateful_batch: Optional[int] = None
        self.input_dim: Optional[int] = None
        if self.batch_input_shape is not None:
            arg, value = self._shape_argument
            if len(self.batch_input_shape) != 3:
                raise ValueError(f"Invalid value for argument `{arg}`. Expected the shape "
                                 f"(time, features) of the inputs (without the batch axis). "
                                 f"Received {arg}={value}")
            batch = self.batch_input_shape[1 if self.time_major else 0]
            if self.stateful and batch is not None:
                self._stateful_batch = batch
        if trainable is not None:
            self.trainable = self._trainable
        self._finish_init()
        if not self.built and getattr(self.cell, "built", False):
            self.built = True

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freezing the layer freezes its cell (a user's torch module too)."""
        Layer.trainable.fset(self, value)
        if not isinstance(self.cell, Layer):
            self.cell.requires_grad_(self._trainable)

    def _apply(self, fn, recurse=True):
        # .double() / .half() / .to(dtype) change the cell's weights and policy: the layer
        # then casts its inputs to the cell's compute dtype
        out = super()._apply(fn, recurse)
        if isinstance(self.cell, Layer):
            self.dtype_policy = DTypePolicy(self.cell.dtype_policy.name)
        return out

    # -- cell facts --------------------------------------------------------------------------
    @property
    def _output_size(self) -> int:
        out = getattr(self.cell, "output_size", None)
        return self._sizes[0] if out is None else int(_flat_sizes(out)[0])

    @property
    def STATE_NAMES(self) -> Tuple[str, ...]:  # noqa: N802 - the recurrent layers' name
        """One name per state (what ``Bidirectional`` counts)."""
        return tuple(f"state_{i}" for i in range(len(self._sizes)))

    @property
    def dropout(self) -> float:
        """The largest input dropout of the cells (0 for other cells): what
        :func:`sepconv.stream` checks."""
        cells = _keras_cells(self.cell) or []
        return max([c.dropout for c in cells], default=0.0)

    @property
    def recurrent_dropout(self) -> float:
        cells = _keras_cells(self.cell) or []
        return max([c.recurrent_dropout for c in cells], default=0.0)

    # -- building ----------------------------------------------------------------------------
    def build(self, input_shape, device=None) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, (batch, time, "
                             f"features). Received input of shape {tuple(input_shape)}")
        if input_shape[2] is None:
            raise ValueError(f"The last dimension of the inputs of layer {self.name!r} "
                             f"should be defined. Received input_shape={tuple(input_shape)}")
        self.input_dim = check_count(input_shape[2], "input features")
        batch = input_shape[1 if self.time_major else 0]
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell._build_checked((batch, self.input_dim), device=device)

    def _build_checked(self, input_shape, device) -> None:
        super()._build_checked(first_shape(input_shape), device)

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        if isinstance(self.cell, Layer):
            shape = self.cell._input_shape_from_weights(weights)
            if shape is not None:
                return (None, None, shape[-1])
        return None

    def _check_input(self, shape) -> None:
        if len(shape) != 3 or (self.input_dim is not None and shape[2] != self.input_dim):
            raise ValueError(f"Layer {self.name!r} expects input of rank 3, (batch, time, "
                             f"features), with {self.input_dim} features. Received input "
                             f"of shape {shape}")
        steps, batch = (shape[0], shape[1]) if self.time_major else (shape[1], shape[0])
        if steps == 0:
            raise ValueError(f"Layer {self.name!r} received input of shape {shape} with no "
                             f"time steps")
        if self.stateful:
            if self._stateful_batch is None:
                self._stateful_batch = batch
            if batch != self._stateful_batch:
                raise ValueError(f"Layer {self.name!r} is stateful: its batch size is fixed "
                                 f"to {self._stateful_batch} (batch_input_shape or the first "
                                 f"call). Received input of shape {shape}")

    # -- weights: the cell's -------------------------------------------------------------------
    @property
    def weights(self):
        return _cell_weights(self.cell)

    def get_weights(self):
        if hasattr(self.cell, "get_weights"):
            return self.cell.get_weights()
        return [p.detach().cpu().numpy() for p in self.cell.parameters()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        self._build_from_weights(weights)
        if hasattr(self.cell, "set_weights"):
            self.cell.set_weights(weights)
            return
        params = list(self.cell.parameters())
        if len(params) != len(weights):
            raise ValueError(f"Layer {self.name!r} expects {len(params)} weights, but "
                             f"received {len(weights)} weights")
        with torch.no_grad():
            for p, w in zip(params, weights):
                w = torch.as_tensor(np.asarray(w))
                if tuple(w.shape) != tuple(p.shape):
                    raise ValueError(f"Layer {self.name!r}: a weight of shape "
                                     f"{tuple(p.shape)} received a value of shape "
                                     f"{tuple(w.shape)}")
                p.copy_(w.to(p.dtype))

    def h5_weight_names(self):
        """``lstm_cell/kernel``, ... (a stack's ``stacked_rnn_cells/gru_cell/kernel``), as
        tf-keras names them in ``.h5`` files."""
        return [f"{self.cell.name}/{n}" for n in _h5_names(self.cell)]

    def constrained_parameters(self):
        return []

    @property
    def losses(self):
        return []

    # -- states --------------------------------------------------------------------------------
    @property
    def states(self) -> Optional[List[torch.Tensor]]:
        """A stateful layer's states (None before any call or reset)."""
        return None if self._kept is None else list(self._kept)

    def reset_states(self, states=None) -> None:
        """Zero a stateful layer's states, or set them to ``states`` (a flat list)."""
        check_resettable(self, self._stateful_batch is not None)
        dtype = self.dtype_policy.compute
        params = list(self.cell.parameters())
        device = params[0].device if params else None
        shapes = [(self._stateful_batch, n) for n in self._sizes]
        if states is None:
            self._kept = [torch.zeros(s, dtype=dtype, device=device) for s in shapes]
            return
        self._kept = reset_state_values(self, _flatten(states), shapes, dtype, device)

    def get_initial_state(self, inputs):
        """Zero states for ``inputs`` (flat list), as the call starts from."""
        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        batch = x.shape[1 if self.time_major else 0]
        return [torch.zeros((batch, n), dtype=self.dtype_policy.compute, device=x.device)
                for n in self._sizes]

    def _state_shape(self, shape) -> Tuple[Optional[int], ...]:
        """The first state's shape for inputs of ``shape`` (the streaming check)."""
        return (shape[0], self._sizes[0])

    def _call_state(self, initial_state, x: torch.Tensor, batch: int):
        if initial_state is None:
            if self.stateful and self._kept is not None:
                return [s.to(device=x.device, dtype=x.dtype) for s in self._kept]
            return [x.new_zeros((batch, n)) for n in self._sizes]
        flat = _flatten(initial_state)
        shapes = [(batch, n) for n in self._sizes]
        if len(flat) != len(shapes):
            raise ValueError(f"Invalid value for argument `initial_state`. Layer "
                             f"{self.name!r} expects a list of {len(shapes)} state tensor(s) "
                             f"of shapes {shapes}. Received {len(flat)}")
        out = []
        for s, shape in zip(flat, shapes):
            s = torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s,
                                device=x.device)
            if tuple(s.shape) != shape:
                raise ValueError(f"Invalid value for argument `initial_state`. Expected "
                                 f"states of shapes {shapes}. Received "
                                 f"{[tuple(np.shape(t)) for t in flat]}")
            out.append(s.to(x.dtype))
        return out

    # -- computing -----------------------------------------------------------------------------
    def forward(self, inputs, mask=None, training=None, initial_state=None, constants=None):
        """Keras' call arguments (see the class docstring); ``inputs`` may also be the list
        ``[inputs, *initial_state]``, as tf-keras calls it."""
        inputs, initial_state = split_state_inputs(self.name, inputs, initial_state)
        x = self._prepare_input(inputs)
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if mask is not None:
            mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor)
                                   else mask, device=x.device)
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"Invalid value for argument `mask`. Expected shape "
                                 f"{tuple(x.shape[:2])} "
                                 f"({'time, batch' if self.time_major else 'batch, time'}). "
                                 f"Received {tuple(mask.shape)}")
            mask = mask.to(torch.bool)
        if self.time_major:
            x = x.transpose(0, 1)
            mask = None if mask is None else mask.transpose(0, 1)
        training = self.training if training is None else bool(training)
        state = self._call_state(initial_state, x, x.shape[0])
        output, states = self._run(x, state, mask, training, self.return_sequences,
                                   constants)
        if self.time_major and self.return_sequences:
            output = output.transpose(0, 1)
        if self.stateful:
            check_state_kept_eagerly(self)
            self._kept = [s.detach() for s in states]
        return [output] + self._nested_states(states) if self.return_state else output

    def _nested_states(self, states: List[torch.Tensor]) -> List[Any]:
        """The final states as tf-keras' RNN returns them: one entry per top-level
        ``state_size`` entry (LSTMCell: ``h, c``; a stack: each cell's, a tensor for a
        one-state cell, a list for LSTM: ``h_gru, [h_lstm, c_lstm]``)."""
        structure = self.cell.state_size
        if not isinstance(structure, (list, tuple)):
            return list(states)
        it = iter(states)

        def pack(s):
            if isinstance(s, (list, tuple)):
                return [pack(v) for v in s]
            return next(it)
        return [pack(s) for s in structure]

    def _run(self, x, state, mask, training, return_sequences, constants=None):
        """``(output, flat final states)`` of the cell over ``x`` ``(batch, time, ...)``."""
        cells = _keras_cells(self.cell)
        if constants is not None and cells is not None:
            raise ValueError(f"Invalid value for argument `constants`: the cell of layer "
                             f"{self.name!r} ({type(self.cell).__name__}) does not take "
                             f"constants (RNN cell does not support constants)")
        if cells is not None:
            return self._run_keras_cells(cells, x, state, mask, training, return_sequences)
        return self._run_steps(x, state, mask, training, return_sequences, constants)

    def _run_keras_cells(self, cells, x, state, mask, training, return_sequences):
        if self.go_backwards:  # every cell reads the steps last to first
            x = torch.flip(x, (1,))
            mask = None if mask is None else torch.flip(mask, (1,))
        out, states, start = x, [], 0
        for index, cell in enumerate(cells):
            count = cell.STATE_COUNT
            last = index == len(cells) - 1
            out, *new = cell._sequence(out, state[start:start + count], training, mask,
                                       return_sequences or not last,
                                       self.zero_output_for_mask)
            states += new
            start += count
        return out, states

    def _run_steps(self, x, state, mask, training, return_sequences, constants):
        steps = x.shape[1]
        if isinstance(steps, torch.SymInt) and torch.compiler.is_exporting():
            raise ValueError(f"Layer {self.name!r} runs its cell "
                             f"({type(self.cell).__name__}) step by step in Python: export "
                             "it with a fixed number of steps (Keras' own cells take a "
                             "dynamic one)")
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        structure = self.cell.state_size
        outputs, previous = [], None
        for t in order:
            out, new = _call_cell(self.cell, x[:, t], _pack(list(state), structure),
                                  training, constants)
            new = _flatten(new)
            if len(new) != len(state):
                raise ValueError(f"The cell of layer {self.name!r} returned {len(new)} "
                                 f"states; its state_size says {len(state)}")
            if mask is not None:
                keep = mask[:, t].unsqueeze(-1)
                if previous is None or self.zero_output_for_mask:
                    previous = torch.zeros_like(out)
                out = torch.where(keep, out, previous)
                new = [torch.where(keep, n, s) for n, s in zip(new, state)]
            state, previous = new, out
            if return_sequences:
                outputs.append(out)
        output = torch.stack(outputs, 1) if return_sequences else previous
        return output, state

    def _stream_chunk(self, x: torch.Tensor, state, mask: Optional[torch.Tensor] = None):
        """Every step's output ``(batch, time, units)`` and the last states from ``state``
        (None: zeros), without dropout, with the Keras ``mask`` ``(batch, time)`` booleans
        if given: ``(output, *states)`` (:func:`sepconv.stream`)."""
        state = self._call_state(state, x, x.shape[0])
        output, states = self._run(x, state, mask, False, True)
        return (output, *states)

    # -- Keras protocol --------------------------------------------------------------------------
    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        """tf-keras' ``RNN.compute_mask``: the input mask with ``return_sequences``, else
        None; with ``return_state`` a list that adds None for each state."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self._sizes)
        return output_mask

    def compute_output_shape(self, input_shape):
        shape = tuple(first_shape(input_shape))
        time, batch = (shape[0], shape[1]) if self.time_major else (shape[1], shape[0])
        units = self._output_size
        if self.return_sequences:
            out = (time, batch, units) if self.time_major else (batch, time, units)
        else:
            out = (batch, units)
        if self.return_state:
            return [out] + [(batch, n) for n in self._sizes]
        return out

    def get_config(self) -> Dict[str, Any]:
        if not isinstance(self.cell, Layer):
            raise ValueError(f"Layer {self.name!r}: its cell {type(self.cell).__name__} is "
                             f"not a Keras cell, so it has no Keras config")
        config = self.base_config()
        config.update({"return_sequences": self.return_sequences,
                       "return_state": self.return_state, "go_backwards": self.go_backwards,
                       "stateful": self.stateful, "unroll": self.unroll,
                       "time_major": self.time_major})
        if self.zero_output_for_mask:  # tf-keras takes it as a keyword, writes none
            config["zero_output_for_mask"] = True
        config["cell"] = _keras_entry(self.cell)
        return config

    def extra_repr(self) -> str:
        parts = []
        for arg in ("return_sequences", "return_state", "go_backwards", "stateful",
                    "time_major", "zero_output_for_mask"):
            if getattr(self, arg):
                parts.append(f"{arg}=True")
        if self.dtype_policy.name != "float32":
            parts.append(f"dtype={self.dtype_policy.name!r}")
        parts.append(f"name={self.name!r}")
        return ", ".join(parts)


def keras3_saved_order(layer: torch.nn.Module, arrays: Sequence[Any]) -> List[Any]:
    """``arrays`` read from a Keras v3 weights file (a stack's cells in the order of their
    group names, ``cells/gru_cell`` before ``cells/lstm_cell``) in ``get_weights`` order;
    other layers' arrays unchanged.  Bidirectional's halves are reordered each."""
    arrays = list(arrays)
    if type(layer).__name__ == "Bidirectional":
        n = len(layer.forward_layer.weights)
        return keras3_saved_order(layer.forward_layer, arrays[:n]) + \
            keras3_saved_order(layer.backward_layer, arrays[n:])
    if isinstance(layer, RNN):
        return _stack_order(layer.cell, arrays)
    return arrays


def keras3_cell_keys(cells: Sequence[torch.nn.Module]) -> List[str]:
    """The groups Keras 3 saves a stack's cells under: ``snake_case(class)``, then ``_1``,
    ``_2`` for the next of the same class."""
    from .base import snake_case
    used: Dict[str, int] = {}
    keys = []
    for cell in cells:
        key = snake_case(type(cell).__name__)
        used[key] = used.get(key, -1) + 1
        keys.append(f"{key}_{used[key]}" if used[key] else key)
    return keys


def _stack_order(cell, arrays: List[Any]) -> List[Any]:
    if not isinstance(cell, StackedRNNCells):
        return arrays
    keys = keras3_cell_keys(cell.cells)
    counts = [len(_cell_weights(c)) for c in cell.cells]
    saved, start = {}, 0
    for index in sorted(range(len(keys)), key=lambda i: keys[i]):
        saved[index] = arrays[start:start + counts[index]]
        start += counts[index]
    return [a for i, c in enumerate(cell.cells) for a in _stack_order(c, saved[i])]
