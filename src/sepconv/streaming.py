"""Stateful step-by-step inference for causal models: ``stream = sepconv.stream(model)``.

A causal convolution's output at step ``t`` reads the inputs ``t - (kernel_size - 1) *
dilation_rate .. t``.  So a model of causal convolutions and per-step layers can run on a
live signal chunk by chunk: each convolution keeps the last ``(kernel_size - 1) *
dilation_rate`` inputs it has seen (zeros at the start, the causal padding) and runs a
``"valid"`` convolution on ``[state, chunk]``, which gives exactly that chunk's outputs.
Memory is the state plus one chunk, whatever the length of the stream.

A strided causal convolution (``strides=s``) outputs at the input steps ``0, s, 2s, ...``
(tf-keras left-pads ``(kernel_size - 1) * dilation_rate`` zeros, then takes every
``s``-th window from the first), ``ceil(steps / s)`` outputs in all.  Beside its last
inputs it keeps its phase, the steps seen modulo ``s``, so a chunk gives exactly the
outputs whose step falls in it: none for a chunk that falls between two of them.

What streams (a ``torch.nn.Sequential``, nested ones flattened, or a single layer), looked
up by class name in :data:`STREAMERS`:

- ``SeparableConv1D`` and ``Conv1D`` with ``padding="causal"`` (any ``kernel_size``,
  ``strides``, ``dilation_rate``, ``depth_multiplier`` / ``groups``, activation; Keras
  refuses strides and dilation both above 1); ``kernel_size=1`` layers with any padding
  and strides (pointwise in time: ``"valid"`` and ``"same"`` then output at the same
  steps as ``"causal"``); ``"valid"`` ones (and ``DepthwiseConv1D``) of any stride
  ``s``: output ``i`` reads the steps ``i * s .. i * s + span``, the causal window ending
  at step ``i * s + span``, emitted once that step has come (the stream gives the valid
  output sequence: the causal outputs before step ``span`` are dropped); with
  ``ZeroPadding1D((span, 0))`` before it (``begin`` zeros before the first chunk: Keras'
  way to a causal ``DepthwiseConv1D``) the pair is a causal convolution;
- ``MaxPooling1D`` / ``AveragePooling1D`` with ``padding="valid"`` (any ``pool_size``,
  ``strides``, data format), as a ``"valid"`` convolution of kernel ``pool_size``;
  ``"same"`` only with ``pool_size=1``: with a larger pool output ``i``, at step ``i *
  s`` in the model's alignment, reads later steps, and the last window reads past the
  end of the sequence (padding a live stream cannot know is there);
- ``UpSampling1D`` (each step of a chunk repeated ``size`` times) and ``Cropping1D((begin,
  0))`` (the stream's first ``begin`` steps dropped; an end crop is refused: a live
  stream does not know its last steps).  After a layer of stride ``s``, ``UpSampling1D(s)``
  gives back the step rate, but its chunks carry whole outputs' repeats: merged with a
  full-rate tensor (a U-Net skip), the chunks must be whole multiples of ``s`` steps
  (else the merge is refused, its inputs' steps do not line up);
- ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D``: the mean (maximum) of the steps
  seen so far, one ``(batch, channels)`` per chunk, as a ``return_sequences=False``
  recurrent layer gives its last output (only per-step layers may follow);
- ``Lambda``, ``Reshape`` and ``Permute`` (and in functional models TensorFlow-function
  and Keras 3 operation nodes, and merges): run on the chunk as they are, once the first
  chunk's probe (:func:`_check_time_locality`) has shown that they act on each step on
  its own;
- per-step layers: Keras' ``Dense`` (last axis), ``BatchNormalization`` and
  ``LayerNormalization`` (over the channel axis), ``Activation``, ``ReLU``, ``ELU``,
  ``LeakyReLU``, ``Softmax`` and ``PReLU`` (channel axis; ``PReLU`` sharing the steps axis),
  ``Dropout``, ``SpatialDropout1D``, ``GaussianNoise``, ``GaussianDropout``,
  ``AlphaDropout``, ``Identity``, ``ThresholdedReLU``, ``ActivityRegularization``,
  ``Rescaling``, ``Normalization``, ``UnitNormalization`` and ``RMSNormalization`` (over
  the channel axis),
  ``Embedding`` (first: the chunks are then ``(batch, steps)`` ids), ``Masking``
  (channels_last); ``TimeDistributed`` (any layer, run on each step on its own);
  ``torch.nn.Linear`` and
  ``LayerNorm`` / ``RMSNorm`` over the channels (last axis), ``torch.nn.BatchNorm1d``
  (axis 1, running statistics), ``torch.nn.Dropout`` / ``Dropout1d`` / ``AlphaDropout``,
  element-wise activations (``ReLU``, ``GELU``, ``Tanh``, ...), ``Softmax`` /
  ``LogSoftmax`` / ``GLU`` over the channel axis, ``Identity``.

- Keras' ``SpectralNormalization`` as the layer it wraps (a causal ``Conv1D``, ``Dense``,
  ...), in eval mode: inference computes that layer on the kernel as stored.
- Keras 3's ``STFTSpectrogram`` with ``padding="valid"`` (and ``expand_dims=False``): a
  frame is output once its last step has come (no zeros before the signal: valid framing);
  ``MelSpectrogram`` (centred frames, a batch-wide dB floor) is refused.
- Keras' ``LSTM``, ``GRU`` and ``SimpleRNN`` (channels_last, as they take ``(batch,
  time, features)``): each chunk runs the recurrence from the states the previous chunk
  left (zeros at the start; ``reset()`` zeroes them).  With ``return_sequences=True``
  a chunk gives its steps' outputs, exactly the whole sequence's; with
  ``return_sequences=False`` (a classifier's last recurrent layer) a chunk gives the
  last output so far, ``(batch, units)``: what the model up to that layer returns on
  the whole sequence seen so far (a chunk of no steps repeats it; zeros before any
  step).  Only per-step layers (a ``Dense`` head, ``Activation``, ...) may follow it.
  The stream keeps its own states: a ``stateful=True`` layer's states are neither read
  nor changed.

Keras masks: a ``Masking`` layer or an ``Embedding(mask_zero=True)`` gives each chunk its
mask (a mask is per step, so each chunk carries its own), and the stream carries it from
layer to layer as tf-keras does (:meth:`_Step.masked`): per-step layers that support
masking pass it on (and read it where their call takes it), convolutions, pooling and
the other layers that do not support masking drop it, merges AND their inputs' masks,
and a Keras 3 file's explicit ``mask=`` argument (its ``any(not_equal(x, 0))`` nodes) is
used as given.  ``LSTM`` / ``GRU`` / ``SimpleRNN`` / ``RNN`` read it: a masked step keeps
the states and outputs the previous output (the last chunk's at a chunk's first steps),
or zeros with ``zero_output_for_mask``; ``GlobalAveragePooling1D`` gives the mean of the
unmasked steps so far (NaN while a stream has none, as the layer on that sequence).  A
mask that reaches any other layer reading it (attention's padding mask over the keys, a
ConvLSTM) is refused, naming the layer.
- Keras' ``ConvLSTM1D`` / ``2D`` / ``3D``, the same way: recurrent over ``time``, axis 1
  of their ``(batch, time, *spatial, channels)`` input (channels_first: ``(batch, time,
  channels, *spatial)``), so chunks split ``time`` and keep the other axes whole, and
  hold that rank (a model whose first convolution or recurrent layer is a ConvLSTM1D
  takes 4D chunks).  ``return_sequences=False`` gives the last output so far, ``(batch,
  *out_spatial, filters)``.  Since time is on axis 1, a ConvLSTM model is channels_last
  in the stream's sense (where the steps are) whatever its ``data_format``: a per-step
  layer over axis 1 after it is refused.

A functional model (``sepconv.load_keras_model``'s ``KerasFunctional``) streams node by
node in its run order: residual and skip connections (merges ``Add``, ``Multiply``, ...,
``Concatenate`` over the channels; TensorFlow / Keras 3 operations, ``Lambda`` layers)
combine chunks of the same steps, so their inputs must come at the same step rate (the
same strides before them).  Operation nodes, ``Lambda`` / ``Reshape`` / ``Permute`` layers
and merges stream when they are time-local: their output at a step depends on that step
only (elementwise functions, ``x * 0.5``, gates ``tanh(a) * sigmoid(b)``, reductions,
softmax, reshapes, slices and concatenations over the channels, ``matmul`` over the
features); those that mix steps (a cumulative sum, a reduction or padding over the
steps, slicing or reversing the steps) are refused, naming the node.  The rule is
empirical and on the model itself, not a table of functions: on the first chunk the
stream runs a random probe sequence whole and in two chunks and compares each such
node's outputs, and refuses indexing that cuts the steps axis (see
:func:`_check_time_locality`); so the refusal comes from the first call, not from
``stream()``.

``MultiHeadAttention`` streams as causal self-attention (``layer(x, x,
use_causal_mask=True)``, no other mask): it keeps the projected keys and values of every
step seen, a cache that grows with the stream.  ``stream(model,
max_attention_steps=N)`` bounds it: each query attends to its last ``N`` steps (itself
included), the cache keeps ``N - 1``, whatever the chunking.  Keras' attention has no
window, so past ``N`` steps the numbers differ from the model's on the whole sequence
(unless the model was trained with that window); ``attention_overflow="error"`` refuses
instead the chunk that would go past ``N`` steps (the stream is left as it was: reset it).
Several inputs take one chunk each per call; several outputs come as a list.  A chunk
refused on the way with a ``ValueError`` (training mode, attention's bound, another batch
size) leaves every state as it was.

Example (strides 2, chunks of any length, empty ones included)::

    >>> import sepconv, torch
    >>> model = torch.nn.Sequential(
    ...     sepconv.Conv1D(8, 4, strides=2, padding="causal", input_shape=(None, 3)),
    ...     sepconv.LSTM(5, return_sequences=True), sepconv.Dense(2)).eval()
    >>> x = torch.randn(1, 11, 3)
    >>> stream = sepconv.stream(model)
    >>> with torch.no_grad():
    ...     parts = [stream(x[:, a:b]) for a, b in ((0, 1), (1, 2), (2, 2), (2, 11))]
    ...     [p.shape[1] for p in parts], torch.allclose(torch.cat(parts, 1), model(x))
    ([1, 0, 0, 5], True)

Refused with a ``ValueError`` naming the layer: recurrent layers with
``go_backwards=True`` and ``Bidirectional`` (an output would read later steps),
``return_state=True``, ``torch.nn.LSTM`` / ``GRU``; non-causal convolutions (``"same"``
with ``kernel_size > 1``: an output would read later steps), ``"same"`` pooling with
``pool_size > 1``, ``ZeroPadding1D`` with an end padding, ``Cropping1D`` with an end crop,
operations and Lambdas that mix steps (on the first chunk), layers that act
across steps (``Linear`` on a ``channels_first`` model, softmax over the steps), any
other module.  Batch normalisation and dropout must be in eval mode (batch statistics
and random masks do not stream): the call says so otherwise.  A chunk of another rank
than the model takes is an error naming the layout.
"""

from __future__ import annotations

from collections import ChainMap
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import functional as _functional
from .layers.attention import GroupQueryAttention as _GroupQueryAttention
from .layers.base import Layer
from .layers.masking import _mask_of_returned_input, _takes_mask, first_argument_mask

#: Keras activations that act on the last axis (not per element).
_LAST_AXIS_ACTIVATIONS = ("softmax", "log_softmax", "glu", "sparsemax")


class _Step:
    """One layer's streaming step: ``__call__(chunk) -> outputs`` and ``reset()``.

    ``data_format``: the layout the layer needs (``None``: either)."""

    data_format: Optional[str] = None
    #: whether the step reads a chunk's Keras mask: ``__call__(x, mask)``
    takes_mask = False

    def __init__(self, module: torch.nn.Module, where: str):
        self.module, self.where = module, where

    def reset(self) -> None:
        pass

    def masked(self, x, mask):
        """``(outputs, their Keras mask)`` of a chunk whose mask is ``mask`` (``None``:
        none), as a tf-keras model carries masks from layer to layer
        (:func:`sepconv.layers.masking.call_with_mask`): the layer reads it where it
        ``supports_masking`` and its call takes a mask, and gives its output's mask (a
        layer that does not support masking drops it).  A mask is per step, so each
        chunk carries its own; a layer that would read it and is not known to use it
        step by step (attention, ...) is refused.  A wrapped layer's step follows its
        wrapper's protocol (the model runs the wrapper)."""
        module = getattr(self, "wrapper", None) or self.module
        supports = bool(getattr(module, "supports_masking", False))
        reads = mask is not None and supports and _takes_mask(module)
        if reads and not self.takes_mask:
            raise ValueError(f"{self.where} reads the Keras mask that a Masking layer or "
                             f"an Embedding(mask_zero=True) before it makes: it does not "
                             f"stream with a mask (only recurrent layers, the masked mean "
                             f"of GlobalAveragePooling1D and per-step layers read one)")
        out = self(x, mask) if reads else self(x)
        if not supports:
            return out, _mask_of_returned_input(module, (x,), out, mask)
        return out, module.compute_mask(x, mask)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def _check_batch(self, batch: Optional[int], x: torch.Tensor) -> None:
        """The batch size of a held state (``None``: none held) must be ``x``'s."""
        if batch is not None and batch != x.shape[0]:
            raise ValueError(f"{self.where} holds the state of a batch of {batch}; "
                             f"received a chunk of shape {tuple(x.shape)}. Call "
                             f"stream.reset() to start new streams")


class _PerStep(_Step):
    """A layer that maps each step on its own: the step is the layer itself (a Keras
    mask it reads is per step too)."""

    takes_mask = True

    def __init__(self, module, where, data_format=None, eval_only=False):
        super().__init__(module, where)
        self.data_format, self.eval_only = data_format, eval_only

    def __call__(self, x, mask=None):
        if self.eval_only and self.module.training:
            raise ValueError(f"{self.where} is in training mode: batch statistics and "
                             f"random masks do not stream. Call model.eval() first")
        return self.module(x) if mask is None else self.module(x, mask=mask)


class _CausalConv(_Step):
    """A causal convolution: ``conv(layer, [state, chunk])`` with ``"valid"`` padding.

    With ``strides=s``, Keras' causal output ``i`` reads the inputs ``i * s - span ..
    i * s`` (tf-keras left-pads ``span`` zeros, then takes every ``s``-th window from the
    first): the outputs fall on the input steps ``t`` with ``t % s == 0``.  ``phase`` is
    the number of steps seen, modulo ``s``: the chunk's first output is at its step
    ``(-phase) % s`` (none if the chunk is shorter)."""

    def __init__(self, module, where, conv: Callable, valid: bool = False):
        super().__init__(module, where)
        self.conv = conv
        #: a "valid" layer: its output ``i`` reads the steps ``i * s .. i * s + span``, the
        #: causal window ending at step ``i * s + span``; the causal outputs before step
        #: ``span`` (which read the zeros before the signal) are not its outputs
        self.valid = valid
        self.data_format = module.data_format
        self.span, self.stride = self._geometry(module)
        self.time_axis = 1 if module.data_format == "channels_last" else 2
        self.reset()

    @staticmethod
    def _geometry(module) -> Tuple[int, int]:
        """``(span, stride)``: the steps a window reaches back, and the stride."""
        return (module.kernel_size[0] - 1) * module.dilation_rate[0], module.strides[0]

    def reset(self) -> None:
        self.state: Optional[torch.Tensor] = None
        self.batch: Optional[int] = None  # of the streams whose state or phase it holds
        # a valid layer outputs at the steps t = span (mod s), t >= span: it starts at the
        # phase that puts the first output at step span % s, and skips span // s outputs
        self.phase = (-self.span) % self.stride if self.valid else 0
        self.skip = self.span // self.stride if self.valid else 0

    def _no_steps(self, x):
        shape = list(x.shape)
        filters = getattr(self.module, "filters", None) or \
            x.shape[3 - self.time_axis] * self.module.depth_multiplier  # (depthwise)
        shape[self.time_axis], shape[3 - self.time_axis] = 0, filters
        return x.new_zeros(shape, dtype=self.module.compute_dtype)

    def __call__(self, x):
        out = self._causal(x)
        if self.skip and out.shape[self.time_axis]:
            drop = min(self.skip, out.shape[self.time_axis])
            self.skip -= drop
            out = out.narrow(self.time_axis, drop, out.shape[self.time_axis] - drop)
        return out

    def _causal(self, x):
        layer, t = self.module, self.time_axis
        steps = x.shape[t]
        if steps == 0:
            return self._no_steps(x)
        if self.valid:  # (its input check counts the steps: a chunk with the state's)
            if not isinstance(x, torch.Tensor):
                x = torch.as_tensor(np.asarray(x))
            pad = list(x.shape)
            pad[t] = self.span
            x = layer._prepare_input(torch.cat([x.new_zeros(pad), x], dim=t))
            x = x.narrow(t, self.span, steps)
        else:
            x = layer._prepare_input(x)
        if self.span or self.stride > 1:  # a state, or a phase (kernel_size 1, strided)
            self._check_batch(self.batch, x)
            self.batch = x.shape[0]
        if self.span:
            if self.state is None:
                shape = list(x.shape)
                shape[t] = self.span
                self.state = x.new_zeros(shape)  # the causal padding
            full = torch.cat([self.state.to(x), x], dim=t)
            # a detached copy: a view would keep the whole chunk (and its graph) alive
            self.state = full.narrow(t, full.shape[t] - self.span, self.span).detach().clone()
        else:
            full = x
        first = (-self.phase) % self.stride  # the chunk's step of its first output
        self.phase = (self.phase + steps) % self.stride
        if first >= steps:
            return self._no_steps(x)
        if first:  # the window of that output starts `first` steps into [state, chunk]
            full = full.narrow(t, first, full.shape[t] - first)
        return self._apply(full)

    def _apply(self, full):
        """The layer's ``"valid"`` output on ``[state, chunk]``."""
        return self.module.activation(self.conv(self.module, full))


class _Recurrent(_Step):
    """Keras' ``LSTM`` / ``GRU`` / ``SimpleRNN`` / ``ConvLSTM1D`` / ``2D`` / ``3D``: the
    recurrence (the layer's ``_stream_chunk``) run on each chunk from the states the
    previous chunk left (zeros at the start).  ``return_sequences=True``: the chunk's
    outputs; ``False``: the last output so far (``(batch, units)``, a ConvLSTM's
    ``(batch, *out_spatial, filters)``), which equals the layer (and the model up to it)
    on the whole sequence seen so far.

    Keras puts time on axis 1 of every recurrent input, ConvLSTM's channels_first
    included: in the stream's terms (where the steps are) they are all channels_last."""

    data_format = "channels_last"
    takes_mask = True

    def __init__(self, module, where):
        super().__init__(module, where)
        self.sequences = module.return_sequences
        #: the rank of the chunks it takes: (batch, time, *spatial, channels)
        self.rank = getattr(module, "RANK", 0) + 3
        self.state: Optional[List[torch.Tensor]] = None
        #: the last output so far (the previous output of a masked step)
        self.last: Optional[torch.Tensor] = None

    def reset(self) -> None:
        self.state = self.last = None

    def _mask(self, mask, x) -> torch.Tensor:
        """A chunk's Keras mask, ``(batch, steps)`` booleans (a masked step keeps the
        states and outputs the previous output, or zeros with ``zero_output_for_mask``:
        per step, so it streams)."""
        if self.rank > 3:
            raise ValueError(f"{self.where} reads a Keras mask (from a Masking layer or an "
                             f"Embedding(mask_zero=True) before it): masked ConvLSTM layers "
                             f"do not stream")
        mask = torch.as_tensor(mask if isinstance(mask, torch.Tensor) else np.asarray(mask),
                               device=x.device)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{self.where} received a mask of shape {tuple(mask.shape)} "
                             f"for a chunk of shape {tuple(x.shape)}: expected "
                             f"{tuple(x.shape[:2])} (batch, steps)")
        return mask.to(torch.bool)

    def __call__(self, x, mask=None):
        layer = self.module
        if layer.training and (layer.dropout or layer.recurrent_dropout):
            raise ValueError(f"{self.where} is in training mode with dropout: random masks "
                             f"do not stream. Call model.eval() first")
        self._check_batch(None if self.state is None else self.state[0].shape[0], x)
        if x.shape[1] > 0:
            x = layer._prepare_input(x)
        state_shape = tuple(layer._state_shape(tuple(x.shape)))
        if self.state is not None and tuple(self.state[0].shape) != state_shape:
            raise ValueError(f"{self.where} holds states of shape "
                             f"{tuple(self.state[0].shape)}; received a chunk of shape "
                             f"{tuple(x.shape)}, whose states would be {state_shape}. "
                             f"Call stream.reset() to start new streams")
        dtype = layer.dtype_policy.compute
        if x.shape[1] == 0:  # no step: nothing changes
            if self.sequences:
                return x.new_zeros((x.shape[0], 0) + state_shape[1:], dtype=dtype)
            if self.last is not None:
                return self.last
            return x.new_zeros(state_shape, dtype=dtype)
        if mask is None:
            output, *states = layer._stream_chunk(x, self.state)
        else:
            mask = self._mask(mask, x)
            output, *states = layer._stream_chunk(x, self.state, mask)
            if self.last is not None and not layer.zero_output_for_mask:
                # the chunk's steps before its first unmasked one output the previous
                # output: the last chunk's (the layer starts from zeros)
                begun = (mask.cumsum(1) > 0).view(mask.shape + (1,) * (output.dim() - 2))
                output = torch.where(begun, output, self.last.unsqueeze(1).to(output))
        # detached copies: truncated backpropagation, and no view keeping the chunk alive
        self.state = [s.detach().clone() for s in states]
        self.last = output[:, -1].detach().clone()
        return output if self.sequences else output[:, -1]


def _recurrent(module, where):
    if not isinstance(module, Layer):  # torch.nn.LSTM / GRU: (seq, batch) layout, tuples
        raise ValueError(f"{where} does not stream: sepconv.stream takes Keras' recurrent "
                         f"layers (sepconv.LSTM, GRU, SimpleRNN, ConvLSTM1D/2D/3D), not "
                         f"torch.nn's")
    if module.go_backwards:
        raise ValueError(f"{where} has go_backwards=True: it reads the sequence last to "
                         f"first, so its first output needs the last step; it cannot stream "
                         f"causally")
    if module.return_state:
        raise ValueError(f"{where} has return_state=True: its call returns a list [output, "
                         f"*states]; a streamed model takes one tensor per layer (the "
                         f"stream carries the states itself)")
    if getattr(module, "time_major", False):
        raise ValueError(f"{where} has time_major=True: its steps are on axis 0, and a "
                         f"stream's chunks are (batch, time, features)")
    return _Recurrent(module, where)


def _generic_rnn(module, where):
    """Keras' ``RNN`` over any cell streams as the recurrent layers do (its
    ``_stream_chunk``); time-major inputs do not (the steps are not on axis 1)."""
    if module.time_major:
        raise ValueError(f"{where} has time_major=True: its steps are on axis 0; a stream "
                         f"takes (batch, time, features) chunks. Use time_major=False")
    return _recurrent(module, where)


def _bidirectional(module, where):
    raise ValueError(f"{where} runs a layer backwards over the whole sequence: its "
                     f"output at a step reads the later steps, so it cannot stream "
                     f"causally. Use a forward-only LSTM / GRU / SimpleRNN")


def _bias(layer) -> Optional[torch.Tensor]:
    return layer._weight("bias") if layer.use_bias else None


def _separable_conv1d_step(layer, x):
    return _functional.separable_conv1d(
        x, layer._weight("depthwise_kernel"), layer._weight("pointwise_kernel"),
        _bias(layer), strides=layer.strides, padding="valid",
        dilation_rate=layer.dilation_rate, data_format=layer.data_format)


def _conv1d_step(layer, x):
    return _functional.conv(x, layer._weight("kernel"), _bias(layer), strides=layer.strides,
                            padding="valid", dilation_rate=layer.dilation_rate,
                            groups=layer.groups, data_format=layer.data_format)


def _depthwise_conv1d_step(layer, x):
    return _functional.depthwise_conv(
        x, layer._weight("depthwise_kernel"), _bias(layer), strides=layer.strides,
        padding="valid", dilation_rate=layer.dilation_rate, data_format=layer.data_format)


def _causal(conv: Callable) -> Callable:
    """A causal convolution streams; a ``"valid"`` one too (its output ``i`` reads the
    steps ``i * s .. i * s + span``: the causal window ending at step ``i * s + span``),
    so a ``ZeroPadding1D((span, 0))`` before it, the causal convolution Keras writes for
    ``DepthwiseConv1D``, streams as one; ``"same"`` reads later steps."""
    def make(module, where):
        k = module.kernel_size[0]
        valid = module.padding == "valid" and k > 1
        if module.padding not in ("causal", "valid") and k > 1:
            raise ValueError(f"{where} has padding={module.padding!r} with kernel_size="
                             f"{module.kernel_size}: only causal and 'valid' layers stream "
                             f"(an output would read later steps). Use padding='causal'")
        _check_activation(module.activation, module.data_format, where)
        return _CausalConv(module, where, conv, valid=valid)
    return make


class _Pool(_CausalConv):
    """``MaxPooling1D`` / ``AveragePooling1D`` with ``padding="valid"``: output ``i`` is
    the window of steps ``i * s .. i * s + pool_size - 1``, emitted once its last step has
    come, as a ``"valid"`` convolution of kernel ``pool_size`` (the windows never reach
    the zeros the state starts with: the outputs that would are skipped).  ``pool_size``
    1 with any padding: every ``s``-th step from the first."""

    @staticmethod
    def _geometry(module) -> Tuple[int, int]:
        return module.pool_size[0] - 1, module.strides[0]

    def _no_steps(self, x):
        shape = list(x.shape)
        shape[self.time_axis] = 0
        dtype = self.module.compute_dtype if x.is_floating_point() else x.dtype
        return x.new_zeros(shape, dtype=dtype)

    def _apply(self, full):
        return self.module.call(full)


def _pooling1d(module, where):
    p = module.pool_size[0]
    if module.padding == "same" and p > 1:
        raise ValueError(f"{where} has padding='same' with pool_size={module.pool_size}: "
                         f"its output i, at step i * {module.strides[0]} in the model's "
                         f"alignment (strides={module.strides}), reads later steps, and "
                         f"its last window reads past the end of the sequence (padding a "
                         f"live stream cannot know is there) unless the length happens to "
                         f"fit. Only padding='valid' (or pool_size 1) pooling streams")
    return _Pool(module, where, None, valid=p > 1)


class _Crop(_Step):
    """``Cropping1D((begin, 0))``: the first ``begin`` steps of the stream dropped."""

    data_format = "channels_last"

    def __init__(self, module, where):
        super().__init__(module, where)
        self.reset()

    def reset(self) -> None:
        self.skip = self.module.cropping[0]

    def __call__(self, x):
        x = torch.as_tensor(x)
        if x.dim() != 3:
            raise ValueError(f"{self.where} takes (batch, steps, channels) chunks. "
                             f"Received a chunk of shape {tuple(x.shape)}")
        if x.is_floating_point():
            x = x.to(self.module.compute_dtype)
        drop = min(self.skip, x.shape[1])
        self.skip -= drop
        return x[:, drop:]


def _cropping1d(module, where):
    if module.cropping[1]:
        raise ValueError(f"{where} has cropping={module.cropping}: it drops the last "
                         f"{module.cropping[1]} steps of the sequence, which a live stream "
                         f"does not know are the last. Only Cropping1D((begin, 0)) streams")
    return _Crop(module, where)


def _upsampling1d(module, where):
    """``UpSampling1D``: each step repeated ``size`` times, on its own."""
    step = _PerStep(module, where, "channels_last")
    step.upsample = module.size[0] if isinstance(module.size, (tuple, list)) else \
        module.size
    return step


class _LeftPad(_Step):
    """``ZeroPadding1D((begin, 0))``: ``begin`` zero steps before the first chunk."""

    def __init__(self, module, where):
        super().__init__(module, where)
        self.data_format = module.data_format
        self.time_axis = 1 if module.data_format == "channels_last" else 2
        self.begin = module.padding[0]
        self.started = False

    def reset(self) -> None:
        self.started = False

    def __call__(self, x):
        x = self.module._prepare_input(x) if x.shape[self.time_axis] else x
        if self.started or not self.begin:
            return x
        self.started = True
        shape = list(x.shape)
        shape[self.time_axis] = self.begin
        return torch.cat([x.new_zeros(shape), x], dim=self.time_axis)


def _zero_padding1d(module, where):
    if module.padding[1]:
        raise ValueError(f"{where} has padding={module.padding}: it pads "
                         f"{module.padding[1]} steps after the end of the sequence, which a "
                         f"live stream does not know. Only ZeroPadding1D((begin, 0)) streams")
    return _LeftPad(module, where)


class _RunningPool(_Step):
    """``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D``: the mean (the maximum) of the
    steps seen so far, ``(batch, channels)`` per chunk (with ``keepdims``: ``(batch, 1,
    channels)``), as a ``return_sequences=False`` recurrent layer gives its last output:
    what the model returns on the whole sequence seen so far.  The mean keeps a float64
    sum and the count; zeros before any step.  With a Keras mask (``GlobalAveragePooling1D``
    reads one): the mean of the unmasked steps seen so far, a sum and a count per stream
    (NaN while a stream has none, as the layer gives on the whole sequence)."""

    takes_mask = True

    def __init__(self, module, where):
        super().__init__(module, where)
        self.data_format = module.data_format
        self.time_axis = 1 if module.data_format == "channels_last" else 2
        self.mean = type(module).__name__.startswith("GlobalAverage")
        self.total: Optional[torch.Tensor] = None
        self.count = 0

    def reset(self) -> None:
        self.total, self.count = None, 0

    def __call__(self, x, mask=None):
        layer, t = self.module, self.time_axis
        x = torch.as_tensor(x)
        if x.is_floating_point():
            x = x.to(layer.compute_dtype)
        self._check_batch(None if self.total is None else self.total.shape[0], x)
        total = self.total
        if x.shape[t]:
            count = x.shape[t]
            if mask is not None and self.mean:  # (batch, steps) -> over the steps axis
                m = torch.as_tensor(mask, device=x.device).to(x.dtype).unsqueeze(3 - t)
                x, count = x * m, m.sum(dim=t, dtype=torch.float64)
            part = x.sum(dim=t, dtype=torch.float64) if self.mean else x.amax(dim=t)
            total = part if total is None else \
                (total + part if self.mean else torch.maximum(total, part))
            self.total = total.detach()  # (gradients flow within the chunk only)
            self.count = self.count + count  # (a number; per stream with a mask)
        if total is None:
            out = x.new_zeros((x.shape[0], x.shape[3 - t]))
        else:
            out = (total / self.count).to(x.dtype) if self.mean else total
        return out.unsqueeze(t) if layer.keepdims else out


def _collapses(step) -> bool:
    """Whether a step gives one value per chunk, no steps (a classifier's head)."""
    return isinstance(step, _RunningPool) or \
        isinstance(step, _Recurrent) and not step.sequences


def _check_activation(fn, data_format, where) -> Optional[str]:
    """The layout an activation needs: the Keras last-axis ones act on the channels only
    in channels_last models."""
    if getattr(fn, "__name__", None) in _LAST_AXIS_ACTIVATIONS:
        if data_format == "channels_first":
            raise ValueError(f"{where} applies {fn.__name__} over the last axis, the steps "
                             f"of a channels_first model: it does not stream")
        return "channels_last"
    return None


def _keras_activation(module, where):
    fmt = _check_activation(module.activation, None, where)
    return _PerStep(module, where, fmt)


#: The channel axis of a 3D input -> the layout it makes the model.
_AXIS_FORMATS = {-1: "channels_last", 2: "channels_last", 1: "channels_first",
                 -2: "channels_first"}


def _keras_batch_norm(module, where, eval_only=True):
    axis = module.axis
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if len(axis) != 1 or axis[0] not in _AXIS_FORMATS:
        raise ValueError(f"{where} normalises over axis={module.axis}: only one channel "
                         f"axis of a (batch, steps, channels) or (batch, channels, steps) "
                         f"input streams")
    return _PerStep(module, where, _AXIS_FORMATS[axis[0]], eval_only=eval_only)


def _keras_layer_norm(module, where):
    return _keras_batch_norm(module, where, eval_only=False)


def _keras_normalization(module, where):
    """Keras' ``Normalization``: statistics per index of its kept axes, which must be the
    channel axis (or none: one mean for everything)."""
    axis = module.axis if isinstance(module.axis, list) else [module.axis]
    if not axis:
        return _PerStep(module, where, None)
    return _keras_batch_norm(module, where, eval_only=False)


def _rescaling(module, where):
    """``Rescaling``: numbers act on every element; lists broadcast over the last axis."""
    lists = isinstance(module.scale, list) or isinstance(module.offset, list)
    return _PerStep(module, where, "channels_last" if lists else None)


def _embedding(module, where):
    """Keras' ``Embedding`` looks each step's id up on its own: a token model's chunks are
    ``(batch, steps)`` ids.  Its mask (``mask_zero=True``: id 0 masked) is per step: each
    chunk carries its own to the layers after it."""
    step = _PerStep(module, where, "channels_last")
    step.rank = 2  # it fixes the chunks' rank: (batch, steps) ids
    return step


def _torch_batch_norm(module, where):
    if not module.track_running_stats or module.running_mean is None:
        raise ValueError(f"{where} has no running statistics (track_running_stats=False): "
                         f"it normalises with each chunk's statistics, which do not stream")
    return _PerStep(module, where, "channels_first", eval_only=True)


def _torch_layer_norm(module, where):
    """``torch.nn.LayerNorm`` / ``RMSNorm`` normalise over their last
    ``len(normalized_shape)`` axes: one is the channels of a channels_last model (each step
    on its own); more take the steps in, which do not stream."""
    shape = tuple(module.normalized_shape)
    if len(shape) != 1:
        raise ValueError(f"{where} normalises over its last {len(shape)} axes "
                         f"(normalized_shape={shape}): only the channel axis of a "
                         f"(batch, steps, channels) input streams")
    return _PerStep(module, where, "channels_last")


def _dim_layer(module, where):
    """Softmax-like modules (torch's ``dim``, Keras' ``axis``): fine over the channel axis,
    refused over the steps."""
    dim = module.axis if isinstance(module, Layer) else getattr(module, "dim", None)
    if isinstance(dim, (list, tuple)) and len(dim) == 1:
        dim = dim[0]
    if dim not in _AXIS_FORMATS:
        raise ValueError(f"{where} acts over dim={dim}: give it the channel axis (1 or 2) "
                         f"of a 3D input to stream it")
    return _PerStep(module, where, _AXIS_FORMATS[dim])


def _prelu(module, where):
    if isinstance(module, Layer):  # Keras: alpha of the input's shape, 1 on shared_axes
        shared = set(module.shared_axes or ())
        if not shared & {1, 2}:
            raise ValueError(f"{where} has a slope per step (shared_axes="
                             f"{module.shared_axes}): share the steps axis to stream it")
        return _PerStep(module, where, None if shared >= {1, 2} else
                        "channels_last" if 1 in shared else "channels_first")
    # torch: one slope per channel is applied on dim 1 (channels_first's channels)
    return _PerStep(module, where, None if module.num_parameters == 1 else "channels_first")


def _per_step(data_format=None, eval_only=False):
    return lambda module, where: _PerStep(module, where, data_format, eval_only)


_ELEMENTWISE = ("Identity", "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU",
                "SiLU", "Mish", "Sigmoid", "Tanh", "Softplus", "Softsign", "Hardtanh",
                "Hardswish", "Hardsigmoid", "LogSigmoid", "Tanhshrink", "Softshrink",
                "Hardshrink", "Threshold", "RReLU")

#: Class name -> ``make(module, where) -> step``: Keras' class names for sepconv's layers,
#: torch's for ``torch.nn`` modules (``Dropout`` is both: eval mode is identity in both).
STREAMERS: Dict[str, Callable] = {
    "SeparableConv1D": _causal(_separable_conv1d_step),
    "Conv1D": _causal(_conv1d_step),
    "DepthwiseConv1D": _causal(_depthwise_conv1d_step),
    "ZeroPadding1D": _zero_padding1d,
    "MaxPooling1D": _pooling1d, "AveragePooling1D": _pooling1d,
    "Cropping1D": _cropping1d, "UpSampling1D": _upsampling1d,
    "GlobalAveragePooling1D": lambda module, where: _RunningPool(module, where),
    "GlobalMaxPooling1D": lambda module, where: _RunningPool(module, where),
    "Dense": _per_step("channels_last"),
    "BatchNormalization": _keras_batch_norm,
    "LayerNormalization": _keras_layer_norm,
    "Activation": _keras_activation,
    "Dropout": _per_step(eval_only=True),
    "Linear": _per_step("channels_last"),
    "BatchNorm1d": _torch_batch_norm,
    "LayerNorm": _torch_layer_norm, "RMSNorm": _torch_layer_norm,
    "Dropout1d": _per_step(eval_only=True),
    "SpatialDropout1D": _per_step(eval_only=True),
    "GaussianNoise": _per_step(eval_only=True),
    "GaussianDropout": _per_step(eval_only=True),
    "AlphaDropout": _per_step(eval_only=True),
    "Normalization": _keras_normalization, "UnitNormalization": _keras_layer_norm,
    "RMSNormalization": _keras_layer_norm,
    "Rescaling": _rescaling, "ThresholdedReLU": _per_step(),
    "ActivityRegularization": _per_step(), "Embedding": _embedding,
    "InputLayer": _per_step(),
    "Masking": _per_step("channels_last"),  # (a step is masked over the last axis)  # a loaded Sequential's first module: the dtype cast
    "LSTM": _recurrent, "GRU": _recurrent, "SimpleRNN": _recurrent,
    "RNN": _generic_rnn,
    "ConvLSTM1D": _recurrent, "ConvLSTM2D": _recurrent, "ConvLSTM3D": _recurrent,
    "Bidirectional": _bidirectional,
    "Softmax": _dim_layer, "LogSoftmax": _dim_layer, "Softmin": _dim_layer,
    "GLU": _dim_layer, "PReLU": _prelu,
    **{name: _per_step() for name in _ELEMENTWISE},
}


class _CausalAttention(_Step):
    """``MultiHeadAttention`` / ``GroupQueryAttention`` as causal self-attention
    (``layer(x, x, use_causal_mask=True)``): each chunk's queries attend to every step
    seen so far and to the chunk's earlier steps.  The projected keys and values of the
    steps seen are kept (a cache that grows with the stream: ``(batch, steps, heads,
    key_dim + value_dim)``, ``GroupQueryAttention``: its key / value heads only; with a
    ``sliding_window`` of ``w`` only the last ``w - 1`` steps, all a later step sees);
    the output equals the layer's on the whole sequence."""

    data_format = "channels_last"

    def __init__(self, module, where, owner: Optional["Stream"] = None):
        super().__init__(module, where)
        self.owner = owner
        self.keys: Optional[torch.Tensor] = None
        self.values: Optional[torch.Tensor] = None
        #: steps seen (a bounded cache keeps fewer)
        self.seen = 0

    def reset(self) -> None:
        self.keys = self.values = None
        self.seen = 0

    def masked(self, x, mask):
        if mask is not None:  # (the model masks the keys of padded steps: not cached)
            raise ValueError(f"{self.where} reads the Keras mask that a Masking layer or "
                             f"an Embedding(mask_zero=True) before it makes (its padded "
                             f"steps' keys): masked attention does not stream")
        return super().masked(x, mask)

    def __call__(self, x):
        layer = self.module
        bound = getattr(self.owner, "max_attention_steps", None)
        if layer.training and layer.dropout:
            raise ValueError(f"{self.where} is in training mode with dropout: random masks "
                             f"do not stream. Call model.eval() first")
        self._check_batch(None if self.keys is None else self.keys.shape[0], x)
        if x.dim() != 3:
            raise ValueError(f"{self.where} streams (batch, steps, features) chunks. "
                             f"Received a chunk of shape {tuple(x.shape)}")
        x = layer._as_tensor(x)
        if not layer.built:
            layer._build_checked([tuple(x.shape)] * 3, device=x.device)
        x = layer._prepare_input(x)
        layer._check_inputs(x, x, x)
        out_features = getattr(layer, "output_shape", None) or (layer.input_dims[0],)
        steps = x.shape[1]
        if steps == 0:
            return x.new_zeros((x.shape[0], 0) + tuple(out_features))

        if bound is not None and self.owner.attention_overflow == "error" and \
                self.seen + steps > bound and not self.owner._probing:
            raise ValueError(
                f"{self.where} has seen {self.seen} steps and the chunk brings {steps}: "
                f"over max_attention_steps={bound}, a query would no longer attend to every "
                f"earlier step as the model does on the whole sequence (Keras' attention "
                f"has no window). Call stream.reset(), or pass attention_overflow='slide' "
                f"to keep the last {bound} steps (other numbers, unless the model was "
                f"trained with that window)")
        q, k, v = (layer._project(name, x) for name in ("query", "key", "value"))
        seen = 0 if self.keys is None else self.keys.shape[1]  # (cached steps)
        if seen:
            k = torch.cat([self.keys.to(k), k], dim=1)
            v = torch.cat([self.values.to(v), v], dim=1)
        # query i of the chunk is cached step seen + i: it sees keys 0 .. seen + i
        mask = torch.ones((steps, seen + steps), dtype=torch.bool, device=x.device)
        mask = mask.tril(diagonal=seen)
        window = getattr(layer, "sliding_window", None)
        if bound is not None:  # the stream's own window: each query's last `bound` steps
            window = bound if window is None else min(window, bound)
        if window is not None:  # ... and of those the last `window` only
            mask = mask.triu(diagonal=seen - window + 1)
        gate = None
        if isinstance(layer, _GroupQueryAttention):
            out, _ = layer._attend(q, k, v, mask.unsqueeze(0), False, False, False)
            if layer.use_gate:
                gate = torch.sigmoid(layer._project("gate", x))
        else:
            out, _ = _functional.dot_product_attention(
                q, k, v, (1,), mask=mask.unsqueeze(0), masking=layer._masking(3, False),
                need_scores=False)
        out = layer._output(out, gate)
        if window is not None:
            keep = max(k.shape[1] - window + 1, 0)  # the last window - 1 steps
            k, v = k[:, keep:], v[:, keep:]
        self.keys, self.values = k.detach().clone(), v.detach().clone()
        self.seen += steps
        return out


def _maker(module: torch.nn.Module) -> Optional[Callable]:
    """The table entry for ``module``: its class or the nearest sepconv / torch.nn base."""
    for cls in type(module).__mro__:
        ours = issubclass(cls, Layer) or cls.__module__.startswith("torch.nn.")
        if ours and cls.__name__ in STREAMERS:
            if cls.__name__ == "RReLU" and module.training:
                return None  # random slopes in training mode
            return STREAMERS[cls.__name__]
    return None


def _flatten(model: torch.nn.Module, prefix: str = "") -> List[Tuple[str, torch.nn.Module]]:
    if isinstance(model, torch.nn.Sequential):
        out = []
        for name, child in model.named_children():
            out += _flatten(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip(".") or type(model).__name__, model)]


def _describe(path: str, module: torch.nn.Module) -> str:
    name = getattr(module, "name", None)
    kind = type(module).__name__
    return f"layer {path!r} ({kind} {name!r})" if isinstance(name, str) \
        else f"layer {path!r} ({kind})"


class Stream:
    """Chunk-by-chunk inference through a causal model; see :mod:`sepconv.streaming`.

    ``stream(chunk)``: ``chunk`` is ``(batch, steps, channels)`` for a channels_last model,
    ``(batch, channels, steps)`` for a channels_first one (a ConvLSTM model: its input
    ``(batch, time, *spatial, channels)``), any number of steps (one and none included);
    returns that chunk's outputs (a strided layer's: those whose steps fall in it).
    Concatenated over the chunks, they equal ``model(whole_sequence)`` to float rounding.
    ``reset()`` forgets the past (new streams, or another batch size).  The state is
    detached from autograd: gradients flow within a chunk, not into earlier chunks
    (truncated backpropagation).
    """

    def __init__(self, model: torch.nn.Module, max_attention_steps: Optional[int] = None,
                 attention_overflow: str = "slide"):
        if isinstance(max_attention_steps, float) and max_attention_steps.is_integer():
            max_attention_steps = int(max_attention_steps)  # (R's numbers are doubles)
        if max_attention_steps is not None and (
                isinstance(max_attention_steps, bool) or
                not isinstance(max_attention_steps, (int, np.integer)) or
                max_attention_steps < 1):
            raise ValueError(f"Invalid value for argument `max_attention_steps`. Expected "
                             f"None or a positive integer. Received "
                             f"max_attention_steps={max_attention_steps!r}")
        if attention_overflow not in ("slide", "error"):
            raise ValueError(f"Invalid value for argument `attention_overflow`. Expected "
                             f"'slide' or 'error'. Received "
                             f"attention_overflow={attention_overflow!r}")
        self.max_attention_steps = None if max_attention_steps is None else \
            int(max_attention_steps)
        self.attention_overflow = attention_overflow
        #: time-locality of the operation / Lambda nodes: checked on the first chunk
        self._probed = False
        self._probing = False
        #: (a Sequential) the index of the step that collapses the steps, if any
        self._collapsed_at: Optional[int] = None
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Invalid type for argument `model`. Expected a torch.nn.Module "
                            f"(a Sequential of causal layers). Received {type(model).__name__}")
        self.model = model
        self.steps: List[_Step] = []
        collapsed_by = None
        self.data_format: Optional[str] = None
        self._fixed_by: Optional[str] = None
        #: the first convolution or recurrent layer: it fixes the chunks' rank
        self._rank_by: Optional[_Step] = None
        #: a functional model (sepconv.load_keras_model's): its graph, run node by node
        self._graph: Optional[_GraphStream] = None
        if hasattr(model, "input_refs") and hasattr(model, "steps"):
            self._graph = _GraphStream(model, self)
            self.steps = self._graph.steps
            if self.data_format is None:
                self.data_format = "channels_last"
            return
        for path, module in _flatten(model):
            where = _describe(path, module)
            make = _maker(module)
            if make is None:
                raise ValueError(f"{where} does not stream: sepconv.stream takes causal "
                                 f"SeparableConv1D / Conv1D layers, forward LSTM / GRU / "
                                 f"SimpleRNN / ConvLSTM layers and per-step layers "
                                 f"({', '.join(sorted(STREAMERS))})")
            step = make(module, where)
            if collapsed_by is not None:
                # (batch, units) per chunk: no steps axis left, any per-step layer applies
                if not isinstance(step, _PerStep):
                    raise ValueError(f"{where} follows {collapsed_by}, which has "
                                     f"return_sequences=False: each chunk then gives the "
                                     f"last output so far, (batch, units), and only "
                                     f"per-step layers (Dense, Activation, ...) may follow. "
                                     f"Set return_sequences=True on it")
            else:
                self._fix_format(step, where)
            if _collapses(step) and collapsed_by is None:
                collapsed_by = where
                self._collapsed_at = len(self.steps)
            if self._rank_by is None and (isinstance(step, (_CausalConv, _Recurrent)) or
                                          hasattr(step, "rank")):
                self._rank_by = step
            self.steps.append(step)
        if self.data_format is None:
            self.data_format = "channels_last"

    def _fix_format(self, step: _Step, where: str) -> None:
        """The model's layout is the first layout a layer needs; a layer that needs the
        other one would act across steps."""
        if step.data_format is None:
            return
        if self.data_format is None:
            self.data_format, self._fixed_by = step.data_format, where
        elif step.data_format != self.data_format:
            axis = 1 if self.data_format == "channels_last" else 2
            raise ValueError(f"{where} needs {step.data_format} input, but {self._fixed_by} "
                             f"makes this a {self.data_format} model (steps on axis "
                             f"{axis}): a layer would act across steps")

    @property
    def state_steps(self) -> List[int]:
        """Steps of state each layer keeps: ``(kernel_size - 1) * dilation_rate`` for a
        convolution (a strided one keeps its phase too), 0 for a per-step layer and for a
        recurrent layer (which keeps its states ``h`` (and ``c``), ``(batch, units)``
        each, a ConvLSTM's ``(batch, *out_spatial, filters)``, not past steps)."""
        return [getattr(step, "span", 0) for step in self.steps]

    def reset(self) -> None:
        """Forget every layer's state: the next chunk starts a new stream."""
        for step in self.steps:
            step.reset()

    def __call__(self, *chunks):
        """One chunk (a functional model with several inputs: one per input, in its
        input order, or one list of them); returns the chunk's outputs (a list for
        several outputs)."""
        if len(chunks) == 1 and isinstance(chunks[0], (list, tuple)) and \
                self._graph is not None:
            chunks = tuple(chunks[0])
        n_inputs = len(self._graph.model.input_refs) if self._graph is not None else 1
        if len(chunks) != n_inputs:
            raise ValueError(f"The streamed model takes {n_inputs} chunk"
                             f"{'s' if n_inputs != 1 else ''} per call (one per input). "
                             f"Received {len(chunks)}")
        xs = [self._checked(c) for c in chunks]
        if not self._probed and self._needs_probe():
            if not any(_steps_of(x, self._time_axis(x)) for x in xs):
                return self._run(xs)  # (no step to build a probe from: at the next chunk)
            _check_time_locality(self, xs)
        self._probed = True
        # a chunk refused on the way (attention over its bound, ...) leaves every state as
        # it was: the states are replaced on each call, never changed in place
        saved = [dict(step.__dict__) for step in self.steps]
        try:
            return self._run(xs)
        except ValueError:
            for step, state in zip(self.steps, saved):
                step.__dict__.update(state)
            raise

    def _needs_probe(self) -> bool:
        if self._graph is not None:
            return any(n.probed for n in self._graph.nodes)
        return any(self._probes_step(i) for i in range(len(self.steps)))

    def _probes_step(self, i: int) -> bool:
        """(a Sequential) step ``i`` is probed: a Lambda before any collapse."""
        return isinstance(self.steps[i], _Probed) and \
            (self._collapsed_at is None or i < self._collapsed_at)

    def _time_axis(self, x: torch.Tensor) -> int:
        """Where the steps are in ``x``: axis 2 of a channels_first tensor of rank 3 or
        more, else axis 1."""
        return 2 if self.data_format == "channels_first" and x.dim() >= 3 else 1

    def _run(self, xs: List[torch.Tensor], record: Optional["_Record"] = None):
        if self._graph is not None:
            return self._graph(xs, record)
        x, mask = xs[0], None  # (a Keras mask from Masking / Embedding(mask_zero=True))
        if record is not None:
            record.values[("input", 0, 0)] = x
        for i, step in enumerate(self.steps):
            if record is not None and self._probes_step(i):
                x = record.exact(("step", i - 1, 0) if i else ("input", 0, 0), x)
                x, mask = record.run(("step", i, 0), step.masked, [x, mask], {})
            else:
                x, mask = step.masked(x, mask)
            if record is not None:
                record.values[("step", i, 0)] = x
        return x

    def _checked(self, chunk) -> torch.Tensor:
        x = chunk
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        rank = getattr(self._rank_by, "rank", 3)
        if x.dim() != rank:
            if rank > 3:  # a ConvLSTM: Keras' (batch, time, *spatial, channels) or alike
                layout = self._rank_by.module._layout()
                layout = f"{layout} for {self._rank_by.where}"
            elif rank == 2:
                layout = f"(batch, steps) ids for {self._rank_by.where}"
            else:
                layout = ("(batch, steps, channels)" if self.data_format == "channels_last"
                          else "(batch, channels, steps)")
            raise ValueError(f"A chunk must be {rank}D, {layout}. Received a chunk of shape "
                             f"{tuple(x.shape)}")
        return x

    def __repr__(self) -> str:
        return (f"Stream({self.data_format}, state_steps={self.state_steps}, "
                f"model={type(self.model).__name__})")


# -- functional models (residual and skip connections, attention blocks) --------------------
#: Merging layers that combine aligned steps (Concatenate: over the channel axis only).
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


class _GraphNode:
    """One node of a streamed functional model: its step, or a multi-input per-step call
    (merges, operations, Lambdas) whose tensors must cover the same steps."""

    def __init__(self, name, node, args, kwargs, step: Optional[_Step], module, where,
                 multi: bool):
        self.name, self.node, self.args, self.kwargs = name, node, args, kwargs
        self.step, self.module, self.where, self.multi = step, module, where, multi
        self.probed = False  # checked for time-locality on the first chunk


class _GraphStream:
    """The functional-model part of :class:`Stream`: nodes in the model's run order."""

    def __init__(self, model, owner: "Stream"):
        from .interop.models import _refs_in, ref_of  # (interop loads on first use)
        modules = dict(model.named_children())
        self.model, self.owner = model, owner
        self.nodes: List[_GraphNode] = []
        stride = {tuple(r): 1 for r in model.input_refs}  # cumulative stride per tensor
        collapsed: Dict[tuple, str] = {}
        for lname, node, args, kwargs in model.steps:
            module = modules[lname]
            where = _describe(lname, module)
            cls = type(module).__name__
            ins = _refs_in(args) + _refs_in(kwargs)
            strides = {stride.get(r, 1) for r in ins}
            rate = max(strides) if strides else 1
            gone = [collapsed[r] for r in ins if r in collapsed]
            # Keras 3 files pass a layer its mask explicitly (mask=any(not_equal(...)))
            mask_ref = ref_of(kwargs.get("mask")) if isinstance(kwargs, dict) else None
            if cls in ("MultiHeadAttention", "GroupQueryAttention"):
                step, multi = self._attention(module, where, args, kwargs), False
                args, kwargs = [args[0]], {}
            elif cls in _MERGES or cls in _OPERATIONS:
                step, multi = None, True
                self._check_multi(module, where, cls, kwargs)
                if len(strides) > 1:
                    raise ValueError(f"{where} combines tensors of different step rates "
                                     f"(strides {sorted(strides)} before it): their chunks' "
                                     f"steps do not line up")
            else:
                others = {k: v for k, v in kwargs.items() if mask_ref is None or k != "mask"}
                if len(_refs_in(args)) != 1 or ref_of(args[0] if args else None) is None \
                        or _refs_in(others):
                    raise ValueError(f"{where} is called on {len(ins)} tensors: in a "
                                     f"streamed model only merges, attention and elementwise "
                                     f"operations take several")
                make = _maker(module)
                if make is None:
                    raise ValueError(f"{where} does not stream: sepconv.stream takes causal "
                                     f"SeparableConv1D / Conv1D layers, forward LSTM / GRU / "
                                     f"SimpleRNN / ConvLSTM layers, causal self-attention, "
                                     f"merges, per-step operations and Lambdas, per-step layers "
                                     f"({', '.join(sorted(STREAMERS))})")
                step, multi = make(module, where), False
                # (a Fraction: UpSampling1D after a strided layer gives back its rate)
                rate = Fraction(rate) * getattr(step, "stride", 1) / \
                    getattr(step, "upsample", 1)
            if gone and (not multi and not isinstance(step, _PerStep)):
                raise ValueError(f"{where} follows {gone[0]}, which has "
                                 f"return_sequences=False: only per-step layers may follow")
            if step is not None:
                owner._fix_format(step, where)
            if step is not None and owner._rank_by is None and \
                    (isinstance(step, (_CausalConv, _Recurrent)) or hasattr(step, "rank")):
                owner._rank_by = step
            self.nodes.append(_GraphNode(lname, node, args, kwargs, step, module, where,
                                         multi))
            self.nodes[-1].inputs = [tuple(r) for r in ins]
            self.nodes[-1].mask_ref = None if multi or mask_ref is None else tuple(mask_ref)
            # every merge and operation is checked on the first chunk; one that follows
            # a collapsed recurrent layer acts on (batch, units), which has no steps
            self.nodes[-1].probed = multi and not gone
            out = (lname, node, 0)
            stride[out] = rate
            if gone:
                collapsed[out] = gone[0]
            if _collapses(step):
                collapsed[out] = where

    def _attention(self, module, where, args, kwargs):
        from .interop.models import ref_of  # (interop loads on first use)
        query = ref_of(args[0]) if args else None
        value = ref_of(args[1]) if len(args) > 1 else ref_of(kwargs.get("value"))
        key = ref_of(args[2]) if len(args) > 2 else ref_of(kwargs.get("key"))
        other = sorted(k for k, v in kwargs.items() if k not in ("value", "key",
                                                                 "use_causal_mask")
                       and v not in (None, False))
        if not kwargs.get("use_causal_mask") or query is None or value != query or \
                key not in (None, query) or other:
            raise ValueError(f"{where} streams as causal self-attention only "
                             f"(layer(x, x, use_causal_mask=True), no mask or scores): a "
                             f"query would read later steps otherwise")
        if getattr(module, "attention_axes", None) not in (None, (1,)):
            raise ValueError(f"{where} attends over axes {module.attention_axes}: only the "
                             f"steps (axis 1) stream")
        return _CausalAttention(module, where, self.owner)

    def _check_multi(self, module, where, cls, kwargs):
        # operations and Lambdas: their time-locality is probed on the first chunk
        # (_check_time_locality); a merge's layout is known here
        if cls == "Concatenate":
            if module.axis not in _AXIS_FORMATS:
                raise ValueError(f"{where} concatenates over axis {module.axis}: only the "
                                 f"channel axis (1 or 2 of a 3D input) streams")
            # the channel axis: axis 1 makes the model channels_first
            self.owner._fix_format(_PerStep(module, where, _AXIS_FORMATS[module.axis]), where)

    def reset(self) -> None:
        for n in self.nodes:
            if n.step is not None:
                n.step.reset()

    def __call__(self, chunks: List[torch.Tensor], record: Optional["_Record"] = None):
        from .interop.models import resolve
        values: Dict[tuple, torch.Tensor] = {} if record is None else record.values
        for ref, x in zip(self.model.input_refs, chunks):
            values[tuple(ref)] = x
        masks: Dict[tuple, torch.Tensor] = {}  # the Keras masks of the values with one

        for n in self.nodes:
            in_mask = first_argument_mask(n.args, masks) if masks else None
            if n.mask_ref is not None:  # (an explicit mask wins, as in Keras)
                in_mask = values[n.mask_ref]
            out_mask = None
            if n.step is not None:
                x = resolve(n.args[0], values)
                if in_mask is None:
                    out = n.step(x)  # (no mask so far: the common case, no bookkeeping)
                    if getattr(n.module, "supports_masking", False):
                        out_mask = n.module.compute_mask(x, None)  # (a mask's source)
                else:
                    out, out_mask = n.step.masked(x, in_mask)
            else:
                if record is not None and n.probed:
                    exact = ChainMap({r: record.exact(r, values[r]) for r in n.inputs},
                                     values)
                    args, kwargs = resolve(n.args, exact), resolve(n.kwargs, exact)
                    out = record.run((n.name, n.node, 0), _Call(n, self.owner), args, kwargs)
                else:
                    args, kwargs = resolve(n.args, values), resolve(n.kwargs, values)
                    out = _Call(n, self.owner)(*args, **kwargs)
                if in_mask is not None:
                    out_mask = _multi_mask(n, args, out, in_mask)
            # several outputs (tf.split, tf.unstack, ...): indexed as the model does
            outs = list(out) if n.multi and isinstance(out, (list, tuple)) else [out]
            out_masks = list(out_mask) if isinstance(out_mask, (list, tuple)) and \
                len(out_mask) == len(outs) else [out_mask] + [None] * (len(outs) - 1)
            for i, (o, m) in enumerate(zip(outs, out_masks)):
                values[(n.name, n.node, i)] = o
                if m is not None:
                    masks[(n.name, n.node, i)] = m
        result = [values[tuple(r)] for r in self.model.output_refs]
        return result[0] if len(result) == 1 else result

    @property
    def steps(self) -> List[_Step]:
        return [n.step for n in self.nodes if n.step is not None]


def _multi_mask(n: "_GraphNode", args, out, mask):
    """The output mask of a merge or operation node given its first argument's mask:
    a merge's ``compute_mask`` (the AND of its inputs' masks: per step), an operation's
    input mask where it returns that input itself; a node that would read the mask is
    refused (the graph streams nodes that act on each step, not masks)."""
    module = n.module
    supports = bool(getattr(module, "supports_masking", False))
    if supports and _takes_mask(module):
        raise ValueError(f"{n.where} reads the Keras mask that a Masking layer or an "
                         f"Embedding(mask_zero=True) before it makes: it does not stream "
                         f"with a mask")
    if not supports:
        return _mask_of_returned_input(module, args, out, mask)
    return module.compute_mask(args[0] if args else None, mask)


def _flat_tensors(v) -> List[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for u in v for t in _flat_tensors(u)]
    if isinstance(v, dict):
        return [t for u in v.values() for t in _flat_tensors(u)]
    return []


class _Call:
    """A merge or operation node called on resolved arguments: its tensors (of rank 3)
    must cover the same steps."""

    def __init__(self, node: "_GraphNode", owner: "Stream"):
        self.node, self.owner = node, owner
        self.where = node.where

    def __call__(self, *args, **kwargs):
        n = self.node
        tensors = [t for t in _flat_tensors(args) + _flat_tensors(kwargs) if t.dim() >= 2]
        axis = 1 if self.owner.data_format == "channels_last" else 2
        sizes = {t.shape[axis] for t in tensors if t.dim() == 3}
        if len(sizes) > 1:
            raise ValueError(f"{n.where} received chunks of {sorted(sizes)} steps: "
                             f"its inputs' steps do not line up")
        return _or_empty(n, tensors, axis, lambda: n.module(*args, **kwargs))


def _or_empty(holder, tensors, axis: int, call: Callable):
    """``call()``; where it fails on a chunk of no steps (``reshape`` to ``-1`` of nothing,
    ...), the output of no steps the probe saw the node give (``holder.empty``)."""
    try:
        return call()
    except Exception:  # noqa: BLE001 - re-raised unless a chunk of no steps explains it
        empty = getattr(holder, "empty", None)
        if empty is None or not tensors or any(t.dim() > axis and t.shape[axis] for t in
                                               tensors):
            raise
        shape, dtype = empty
        return tensors[0].new_zeros((tensors[0].shape[0],) + shape[1:], dtype=dtype)


def stream(model: torch.nn.Module, max_attention_steps: Optional[int] = None,
           attention_overflow: str = "slide") -> Stream:
    """Wrap a causal model for chunk-by-chunk inference: ``stream(model)(chunk)``.

    Args:
        model: a ``torch.nn.Sequential`` (or one layer) of causal ``SeparableConv1D`` /
            ``Conv1D`` / ``DepthwiseConv1D`` layers (strided ones too; ``"valid"`` ones),
            ``"valid"`` pooling, ``UpSampling1D``, ``Cropping1D((begin, 0))``, forward
            recurrent layers (``LSTM``, ``GRU``, ``SimpleRNN``, ``ConvLSTM1D/2D/3D``; masks
            from ``Masking`` / ``Embedding(mask_zero=True)``), per-step layers and
            time-local ``Lambda`` layers (see :mod:`sepconv.streaming`), or a
            functional model from :func:`sepconv.load_keras_model` of those plus merges,
            time-local operation nodes and causal self-attention; in eval mode where it
            has batch normalisation or dropout.
        max_attention_steps: ``None`` (default: causal self-attention attends to every
            step seen, a cache that grows with the stream) or ``N``: each query attends
            to its last ``N`` steps only, a bounded cache; other numbers than the model's
            on the whole sequence once the stream is longer than ``N`` (Keras' attention
            has no window), unless the model was trained with that window.
        attention_overflow: ``"slide"`` (default: keep the last ``N`` steps) or
            ``"error"``: a chunk that would take the stream past ``N`` steps is refused
            (``ValueError``), so the numbers stay Keras' exactly.

    Returns:
        A :class:`Stream`: call it on chunks ``(batch, steps, channels)`` (channels_first:
        ``(batch, channels, steps)``; a ConvLSTM model: ``(batch, time, *spatial,
        channels)``); ``reset()`` starts over.

    Raises:
        ValueError: naming the first layer that cannot stream (non-causal, reading the
            sequence backwards, acting across steps, or unknown); for operation nodes and
            Lambdas that mix steps, on the first chunk.
    """
    return Stream(model, max_attention_steps=max_attention_steps,
                  attention_overflow=attention_overflow)


# -- audio front ends (Keras 3's STFTSpectrogram; MelSpectrogram refused) -------------------

class _Framing(_Step):
    """``STFTSpectrogram`` with ``padding="valid"``: frame ``i`` reads the input steps ``i *
    frame_step .. i * frame_step + frame_length - 1``, so it is known once its last step has
    come.  The step keeps the inputs from the next frame's first step on (fewer than
    ``frame_length``; none are zeros: valid framing pads nothing) and runs the layer on
    ``[kept, chunk]``, which gives exactly the frames that end in the chunk (none for a
    chunk that completes no frame)."""

    def __init__(self, module, where):
        super().__init__(module, where)
        self.data_format = module.data_format
        self.time_axis = 1 if module.data_format == "channels_last" else 2
        self.span = module.frame_length - 1
        self.stride = module._frame_step
        self.kept: Optional[torch.Tensor] = None
        self.batch: Optional[int] = None

    def reset(self) -> None:
        self.kept, self.batch = None, None

    def __call__(self, x):
        layer, t = self.module, self.time_axis
        x = layer._prepare_input(x) if x.shape[t] >= layer.frame_length else \
            torch.as_tensor(x).to(layer.compute_dtype)
        self._check_batch(self.batch, x)
        self.batch = x.shape[0]
        full = x if self.kept is None else torch.cat([self.kept.to(x), x], dim=t)
        frames = 0 if full.shape[t] < layer.frame_length else \
            (full.shape[t] - layer.frame_length) // self.stride + 1
        used = frames * self.stride
        # a detached copy: a view would keep the whole chunk (and its graph) alive
        self.kept = full.narrow(t, used, full.shape[t] - used).detach().clone()
        if frames == 0:
            shape = list(layer.compute_output_shape(
                (x.shape[0], None, x.shape[2]) if t == 1 else (x.shape[0], x.shape[1], None)))
            shape[t] = 0
            return x.new_zeros(shape)
        return layer(full.narrow(t, 0, used - self.stride + layer.frame_length))


def _stft_framing(module, where):
    if module.padding != "valid":
        raise ValueError(f"{where} has padding={module.padding!r}: its first frame is "
                         f"centred on zeros before the signal and its last reads past the "
                         f"end, which a live stream does not know yet. Only "
                         f"padding='valid' STFTSpectrogram layers stream")
    if module.expand_dims:
        raise ValueError(f"{where} has expand_dims=True: its output (batch, frames, freq, "
                         f"channels) is an image, not (batch, steps, features) chunks. Use "
                         f"expand_dims=False to stream")
    return _Framing(module, where)


def _mel_spectrogram(module, where):
    raise ValueError(f"{where} does not stream: its frames are centred (each reads "
                     f"fft_length // 2 samples ahead, and the signal's ends are reflected), "
                     f"its output puts time on the last axis, and power_to_db's floor "
                     f"follows the loudest value of the whole input. Stream an "
                     f"STFTSpectrogram(padding='valid') front end instead")


STREAMERS["STFTSpectrogram"] = _stft_framing
STREAMERS["MelSpectrogram"] = _mel_spectrogram


# -- Keras' SpectralNormalization (layers/spectral.py) ------------------------------------
class _EvalOnlyWrapper:
    """Mixed into the step of a wrapped layer: refuses chunks while the wrapper is in
    training mode (where each call would normalize and overwrite the kernel)."""

    wrapper: torch.nn.Module
    wrapper_where: str

    def __call__(self, x, *mask):
        if self.wrapper.training:
            raise ValueError(f"{self.wrapper_where} is in training mode: each call "
                             f"normalizes and overwrites its layer's kernel, which a stream "
                             f"does not do. Call model.eval() first")
        return super().__call__(x, *mask)


_WRAPPED_STEPS: Dict[type, type] = {}


def _spectral_normalization(module, where):
    """``SpectralNormalization`` streams as its wrapped layer (a causal ``Conv1D``, a
    ``Dense``, ...) in inference, where it computes the wrapped layer on the kernel as
    stored (the one the last training call normalized); in training mode it is refused."""
    inner = module.layer
    maker = _maker(inner)
    inner_where = f"{where}'s layer {inner.name!r} ({type(inner).__name__})"
    if maker is None:
        raise ValueError(f"{inner_where} does not stream (supported: "
                         f"{', '.join(sorted(STREAMERS))})")
    step = maker(inner, inner_where)
    cls = type(step)
    if cls not in _WRAPPED_STEPS:  # the step's own class stays a base: isinstance holds
        _WRAPPED_STEPS[cls] = type(f"_SpectralNormalized{cls.__name__.lstrip('_')}",
                                   (_EvalOnlyWrapper, cls), {})
    step.__class__ = _WRAPPED_STEPS[cls]
    step.wrapper, step.wrapper_where = module, where
    return step


STREAMERS["SpectralNormalization"] = _spectral_normalization


# -- time-locality of operation nodes and Lambdas ------------------------------------------
#: Nodes whose time-locality is probed: tf-keras' TensorFlow-function nodes, Keras 3's
#: operation nodes, Lambda layers (merging layers are probed too, see _GraphStream).
_OPERATIONS = ("TFOp", "KerasOp", "Lambda", "Reshape", "Permute")

#: The probe: ``_PROBE_STEPS`` steps (times the largest stride of the model), cut after
#: ``_PROBE_CUT``: lengths no layer is likely to have as another axis.
_PROBE_STEPS, _PROBE_CUT = 78, 37


class _Probed(_PerStep):
    """A ``Lambda`` of a ``Sequential``: per step, once the first chunk's probe has shown
    that it acts on each step on its own (:func:`_check_time_locality`)."""

    def __call__(self, x, mask=None):
        return _or_empty(self, [x] if isinstance(x, torch.Tensor) else [], 1,
                         lambda: super(_Probed, self).__call__(x, mask))


#: Layers whose output in training mode is random or uses the batch's statistics.
_TRAINING_DEPENDENT = ("BatchNormalization", "Dropout", "SpatialDropout1D",
                       "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                       "GaussianDropout", "AlphaDropout")


def _time_distributed(module, where):
    """``TimeDistributed(layer)`` runs ``layer`` on each step of ``(batch, time, ...)`` on
    its own: per step whatever the layer (in eval mode where it normalizes with batch
    statistics or drops at random)."""
    eval_only = any(type(m).__name__ in _TRAINING_DEPENDENT for m in module.modules())
    return _PerStep(module, where, "channels_last", eval_only=eval_only)


STREAMERS["TimeDistributed"] = _time_distributed

for _name in ("Lambda", "Reshape", "Permute"):
    STREAMERS[_name] = lambda module, where: _Probed(module, where)


def _steps_of(x, axis: int) -> int:
    return x.shape[axis] if isinstance(x, torch.Tensor) and x.dim() > axis else 0


class _IndexWatch(torch.overrides.TorchFunctionMode):
    """Records every ``tensor[index]`` a node makes: ``(shape, index)``."""

    def __init__(self):
        super().__init__()
        self.calls: List[Tuple[tuple, object]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__ and args and isinstance(args[0], torch.Tensor):
            self.calls.append((tuple(args[0].shape), args[1]))
        return func(*args, **(kwargs or {}))


def _cut_axis(shape: tuple, key, lengths: set) -> Optional[int]:
    """The first axis (not the batch) of size in ``lengths`` that ``key`` does not take
    whole (``[:]``, ``[0:]``), else ``None``."""
    items = list(key) if isinstance(key, tuple) else [key]

    def width(item):  # axes an index item takes
        if item is None or item is Ellipsis:
            return 0
        if isinstance(item, torch.Tensor) and item.dtype == torch.bool:
            return max(item.dim(), 1)
        return 1

    named = sum(width(i) for i in items)
    dim = 0
    for item in items:
        if item is Ellipsis:
            dim += len(shape) - named
            continue
        for d in range(dim, dim + width(item)):
            whole = isinstance(item, slice) and item.start in (None, 0) and \
                item.stop is None and item.step in (None, 1)
            if 0 < d < len(shape) and shape[d] in lengths and not whole:
                return d
        dim += width(item)
    return None


class _Record:
    """One probe run of a stream: every tensor's value, each probed node's indexing, and
    the first probed node that failed (with its error)."""

    def __init__(self, owner: "Stream", whole: Optional["_Record"] = None,
                 before: Optional["_Record"] = None):
        self.owner, self.whole, self.before = owner, whole, before
        self.values: Dict[tuple, object] = {}
        self.index: Dict[tuple, list] = {}
        self.failed: Optional[Tuple[tuple, object, BaseException]] = None

    def exact(self, ref, value):
        """A probed node's input on a chunk: the slice of the whole run's value where it
        has the chunk's steps (so rounding differences of the layers before it, which a
        sign or a comparison could turn into a mismatch, do not reach the node)."""
        w = None if self.whole is None else self.whole.values.get(ref)
        if not (isinstance(value, torch.Tensor) and isinstance(w, torch.Tensor)) or \
                value.dim() != w.dim():
            return value
        axis = self.owner._time_axis(value)
        if value.dim() <= axis or value.shape[:axis] != w.shape[:axis] or \
                value.shape[axis + 1:] != w.shape[axis + 1:]:
            return value
        steps, total = value.shape[axis], w.shape[axis]
        if self.before is None:  # the first chunk: a prefix, shorter than the whole
            start = 0
            if steps >= total:
                return value
        else:  # the second: the rest (a tensor without steps has the same size in each)
            prior = self.before.values.get(ref)
            if not isinstance(prior, torch.Tensor) or prior.dim() != w.dim() or \
                    prior.shape[axis] + steps != total:
                return value
            start = prior.shape[axis]
        return w.narrow(axis, start, steps)

    def run(self, ref, call, args, kwargs):
        watch = _IndexWatch()
        try:
            with watch:
                return call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - reported as the node's refusal
            self.failed = (ref, call, err)
            raise _ProbeStopped() from err
        finally:
            self.index[ref] = watch.calls


class _ProbeStopped(Exception):
    pass


def _probe_input(x: torch.Tensor, axis: int, steps: int, gen: torch.Generator):
    shape = list(x.shape)
    shape[axis] = steps
    if x.is_floating_point() or x.is_complex():
        scale = float(x.detach().abs().max()) if x.numel() else 1.0
        return (torch.randn(shape, generator=gen, dtype=torch.float64) *
                (scale if scale > 0 else 1.0)).to(x)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).to(torch.bool)
    top = int(x.max()) if x.numel() else 1
    return torch.randint(0, max(top, 1) + 1, shape, generator=gen).to(x)


def _leaves(v) -> list:
    if isinstance(v, (list, tuple)):
        return [t for u in v for t in _leaves(u)]
    return [v]


def _tolerance(t: torch.Tensor) -> float:
    return {torch.float64: 1e-10, torch.float32: 1e-5, torch.complex128: 1e-10,
            torch.complex64: 1e-5}.get(t.dtype, 1e-2)


def _check_time_locality(owner: "Stream", xs: List[torch.Tensor]) -> None:
    """Decide, on the first chunk, that every operation node and ``Lambda`` (and merge)
    of the model acts on each step on its own, or refuse it naming the node.

    The rule: the stream runs on a probe sequence of random values of the chunk's shape
    (integer ids: in ``[0, max id]``), ``78 * s`` steps long (``s``: the model's largest
    stride), once whole and once as two chunks (cut after ``37 * s`` steps), from fresh
    states; on the chunks, a node is given the slices of the whole run's inputs (so the
    rounding of the layers before it, which a sign or a comparison could amplify, does
    not count).  A node is time-local when

    - on every tensor it outputs with a steps axis (one whose sizes on the two chunks add
      up to the whole's), the two chunks' outputs, concatenated, equal the whole
      sequence's output (1e-5 of the output's scale in float32, 1e-10 in float64):
      so a cumulative sum, a reversal, a shift, a padding, a reduction over the steps
      or a ``tf.shape``-dependent scaling is refused;
    - it indexes (``tensor[...]``, Keras' slicing nodes) no axis of the size of its
      chunk's steps other than whole (``x[:, :, :64]`` on channels streams, ``x[:, 1:]``
      and ``x[:, :100]`` do not: a bound beyond the probe's length would otherwise pass);
    - an output without a steps axis (``tf.shape(x)``, a mean over the steps) feeds
      only other probed nodes, whose outputs are checked in turn: a layer or a model
      output fed by it is refused;
    - it runs on a chunk at all (a reshape to a fixed number of steps does not).

    Nodes after a ``return_sequences=False`` recurrent layer act on ``(batch, units)``,
    which has no steps: they are not probed.  The states are reset afterwards; the chunk
    then runs as usual.  A node whose Python code branches on the number of steps it is
    given beyond the probe's lengths is beyond this rule."""
    # the strides' product bounds every path's cumulative stride
    rate = min(int(np.prod([getattr(st, "stride", 1) for st in owner.steps])), 64)
    total, cut = _PROBE_STEPS * rate, _PROBE_CUT * rate
    gen = torch.Generator().manual_seed(0)
    axes = [owner._time_axis(x) for x in xs]
    probe = [_probe_input(x, a, total, gen) for x, a in zip(xs, axes)]
    records = []
    owner._probing = True
    try:
        with torch.no_grad():
            for parts in ([(0, total)], [(0, cut), (cut, total)]):
                owner.reset()
                for a, b in parts:
                    rec = _Record(owner, records[0] if records else None,
                                  records[1] if len(records) == 2 else None)
                    records.append(rec)
                    try:
                        owner._run([p.narrow(ax, a, b - a) for p, ax in zip(probe, axes)],
                                   rec)
                    except _ProbeStopped:
                        pass
                    except ValueError:
                        if rec.failed is None:
                            raise
    finally:
        owner._probing = False
        owner.reset()
    whole, first, second = records
    _judge(owner, whole, first, second)


def _judge(owner: "Stream", whole: _Record, first: _Record, second: _Record) -> None:
    if owner._graph is not None:
        from .interop.models import _refs_in
        nodes = [((n.name, n.node), n.where, _refs_in(n.args) + _refs_in(n.kwargs), n.probed,
                  n) for n in owner._graph.nodes]
        outputs = [tuple(r) for r in owner._graph.model.output_refs]
    else:
        nodes, previous = [], ("input", 0, 0)
        for i, step in enumerate(owner.steps):
            nodes.append((("step", i), step.where, [previous], owner._probes_step(i),
                          step))
            previous = ("step", i, 0)
        outputs = [previous]

    def timed(ref) -> Optional[int]:  # the steps axis of a value, if it has one
        vals = [r.values.get(ref) for r in (whole, first, second)]
        if not all(isinstance(v, torch.Tensor) for v in vals):
            return None
        axis = owner._time_axis(vals[0])
        if vals[0].dim() <= axis or any(v.dim() != vals[0].dim() for v in vals):
            return None
        if vals[0].shape[axis] != vals[1].shape[axis] + vals[2].shape[axis]:
            return None
        return axis

    stepless: Dict[tuple, str] = {}  # a probed node's output without steps -> its node
    for key, where, ins, probed, holder in nodes:
        for ref in ins:
            if ref in stepless and not probed:
                raise ValueError(f"{stepless[ref]} gives a tensor without a steps axis (it "
                                 f"reduces over the steps or reads their number) to "
                                 f"{where}: each chunk would give its own. It does not "
                                 f"stream")
        if not probed:
            continue
        for rec, what in ((whole, None), (first, 0), (second, 1)):
            ref = key + (0,)
            if rec.failed is not None and rec.failed[0][:2] == key:
                err = rec.failed[2]
                for r in ins:
                    if r in stepless:
                        raise ValueError(f"{stepless[r]} gives a tensor without a steps "
                                         f"axis (it reduces over the steps or reads their "
                                         f"number) to {where}, which then fails on a chunk "
                                         f"({type(err).__name__}: {err}). It does not "
                                         f"stream") from err
                steps = sorted({_steps_of(rec.values.get(r), owner._time_axis(
                    rec.values[r])) for r in ins if isinstance(rec.values.get(r),
                                                               torch.Tensor)})
                raise ValueError(f"{where} does not run on a chunk of {steps} steps "
                                 f"({type(err).__name__}: {err}): it does not stream "
                                 f"(it needs a fixed number of steps, or its inputs' "
                                 f"steps do not line up)") from err
            if ref not in rec.values:  # an earlier node stopped this run
                return _judge_tail(rec, where)
            if what is None:
                continue
            lengths = {rec.values[r].shape[timed(r)] for r in ins if timed(r) is not None}
            for shape, index in rec.index.get(ref, []):
                axis = _cut_axis(shape, index, lengths)
                if axis is not None:
                    raise ValueError(f"{where} indexes axis {axis} of a tensor of shape "
                                     f"{shape} (the steps of its chunk: {sorted(lengths)}) "
                                     f"with {index!r}: slicing or picking steps reads "
                                     f"other steps than its own. It does not stream")
        i = 0
        while key + (i,) in whole.values:
            ref = key + (i,)
            axis = timed(ref)
            if axis is None:
                stepless[ref] = where
            else:
                w = whole.values[ref]
                got = torch.cat([first.values[ref], second.values[ref]], dim=axis)
                if got.shape != w.shape or not _close(got, w):
                    raise ValueError(f"{where} mixes steps: run on a probe sequence in two "
                                     f"chunks, its outputs differ from the whole "
                                     f"sequence's (an output at a step reads other steps: "
                                     f"a cumulative sum, reversal, shift, padding or "
                                     f"reduction over the steps). It does not stream")
                if i == 0 and (key + (1,)) not in whole.values:  # a chunk of no steps
                    holder.empty = (tuple(w.shape[:axis]) + (0,) + tuple(w.shape[axis + 1:]),
                                    w.dtype)
            i += 1
    for ref in outputs:
        if ref in stepless:
            raise ValueError(f"{stepless[ref]} gives the model an output without a steps "
                             f"axis (it reduces over the steps or reads their number): "
                             f"each chunk would give its own. It does not stream")


def _judge_tail(rec: _Record, where: str) -> None:
    if rec.failed is not None:  # (a failure in a node the caller could not name)
        raise ValueError(f"{where}: the first chunk's probe stopped ({rec.failed[2]})")


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    if not (want.is_floating_point() or want.is_complex()):
        return bool(torch.equal(got, want))
    g, w = got.detach().to(torch.complex128 if want.is_complex() else torch.float64), \
        want.detach().to(torch.complex128 if want.is_complex() else torch.float64)
    finite = torch.isfinite(w)
    if not torch.equal(finite, torch.isfinite(g)):
        return False
    if not finite.any():
        return True
    scale = float(w[finite].abs().max()) or 1.0
    return bool(((g - w)[finite].abs() <= _tolerance(want) * scale).all())
