"""The Keras layer protocol on a ``torch.nn.Module``.

``Layer`` owns what every sepconv layer shares with Keras: argument checking helpers,
unique names, the dtype policy, building weights from an input shape (at construction
from ``input_shape`` / ``batch_input_shape``, else at the first call), ``weights``,
``trainable``, regularizer losses, constraints, ``get_weights`` / ``set_weights`` and
the common part of ``get_config``.  Subclasses declare weights in ``build`` with
``add_weight`` and compute in ``forward`` through :mod:`sepconv.functional`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import numbers
import re
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import constraints as _constraints
from .._registry import serialize as _serialize
from .. import regularizers as _regularizers

_name_counters: Dict[str, itertools.count] = {}
_used_names: set = set()

_DTYPES = {
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
    "double": torch.float64,
}


def unique_name(base: str) -> str:
    """Keras' auto names: ``base``, ``base_1``, ``base_2``, ... unique in this process."""
    counter = _name_counters.setdefault(base, itertools.count())
    while True:
        n = next(counter)
        name = base if n == 0 else f"{base}_{n}"
        if name not in _used_names:
            _used_names.add(name)
            return name


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """A whole number >= ``minimum``; whole floats (R's doubles) pass, 2.5 does not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid type for argument `{name}`. Expected an integer. "
                        f"Received {name}={value!r} of type {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif float(value).is_integer():
        value = int(value)
    else:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a whole number. "
                         f"Received {name}={value!r}")
    if value < minimum:
        rule = "a strictly positive value" if minimum == 1 else f"a value >= {minimum}"
        raise ValueError(f"Invalid value for argument `{name}`. Expected {rule}. "
                         f"Received {name}={value}")
    return value


def check_tuple(value: Any, name: str, rank: int = 1) -> Tuple[int, ...]:
    """An int or a tuple/list of ``rank`` ints, each strictly positive."""
    if isinstance(value, (tuple, list)):
        if len(value) != rank:
            raise ValueError(f"Invalid value for argument `{name}`. Expected an int or a "
                             f"tuple of {rank} int{'s' if rank > 1 else ''}. "
                             f"Received {name}={value!r}")
        return tuple(check_count(v, name) for v in value)
    return (check_count(value, name),) * rank


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Invalid type for argument `{name}`. Expected True or False. "
                        f"Received {name}={value!r}")
    return bool(value)


def check_data_format(value: Any) -> str:
    """``"channels_last"`` (also for ``None``, Keras' default) or ``"channels_first"``."""
    if value is None:
        return "channels_last"
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `data_format`. Expected a string. "
                        f"Received data_format={value!r}")
    fmt = value.lower()
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError("Invalid value for argument `data_format`. Expected one of "
                         "'channels_last', 'channels_first'. "
                         f"Received data_format={value!r}")
    return fmt


def check_padding(value: Any, allowed: Tuple[str, ...], why: str = "") -> str:
    """A padding name among ``allowed`` (any case); ``why`` explains a refusal."""
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for argument `padding`. Expected a string. "
                        f"Received padding={value!r}")
    padding = value.lower()
    if padding not in allowed:
        raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                         f"{allowed}{why}. Received padding={value!r}")
    return padding


def check_conv_geometry(kernel_size: Any, strides: Any, dilation_rate: Any,
                        rank: int, strided_dilation: bool = False
                        ) -> Tuple[Tuple[int, ...], ...]:
    """``kernel_size``, ``strides``, ``dilation_rate`` as ``rank``-tuples, with tf-keras'
    rule for every convolution: no ``strides > 1`` on any axis together with
    ``dilation_rate > 1`` on any axis (even on different axes), unless ``strided_dilation``
    (Keras 3's depthwise and separable layers, which compute them)."""
    kernel_size = check_tuple(kernel_size, "kernel_size", rank)
    strides = check_tuple(strides, "strides", rank)
    dilation_rate = check_tuple(dilation_rate, "dilation_rate", rank)
    if max(strides) > 1 and max(dilation_rate) > 1 and not strided_dilation:
        raise ValueError("`strides > 1` not supported in conjunction with "
                         f"`dilation_rate > 1`. Received: strides={strides} and "
                         f"dilation_rate={dilation_rate}")
    return kernel_size, strides, dilation_rate


def check_shape(value: Any, name: str) -> Optional[Tuple[Optional[int], ...]]:
    """A shape tuple whose entries are whole numbers >= 0 or ``None``."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list, torch.Size)):
        raise TypeError(f"Invalid type for argument `{name}`. Expected a tuple such as "
                        f"(None, 16). Received {name}={value!r}")
    return tuple(None if v is None else check_count(v, name, minimum=0) for v in value)


class DTypePolicy:
    """Keras dtype policy: a variable dtype and a compute dtype (differ for ``mixed_*``)."""

    def __init__(self, dtype: Any = None):
        self.name: str
        if dtype is None:
            dtype = torch.get_default_dtype()
        if isinstance(dtype, dict):  # Keras 3 serialised policy
            dtype = (dtype.get("config") or {}).get("name", dtype)
        if isinstance(dtype, DTypePolicy):
            dtype = dtype.name
        if isinstance(dtype, torch.dtype):
            if not dtype.is_floating_point:
                raise ValueError(f"Invalid value for argument `dtype`. Expected a floating "
                                 f"dtype. Received dtype={dtype}")
            self.variable = self.compute = dtype
            self.name = str(dtype).replace("torch.", "")
            return
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and
                                           issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name
        if not isinstance(dtype, str):
            raise TypeError(f"Invalid type for argument `dtype`. Expected a dtype name, a "
                            f"torch.dtype or a Keras policy. Received dtype={dtype!r}")
        key = dtype.lower()
        if key.startswith("mixed_") and key[6:] in ("float16", "bfloat16"):
            self.variable, self.compute, self.name = torch.float32, _DTYPES[key[6:]], key
            return
        if key not in _DTYPES:
            raise ValueError("Invalid value for argument `dtype`. Expected one of float16, "
                             "bfloat16, float32, float64, mixed_float16, mixed_bfloat16 or a "
                             f"torch floating dtype. Received dtype={dtype!r}")
        self.variable = self.compute = _DTYPES[key]
        self.name = str(self.variable).replace("torch.", "")


#: Keras class name -> sepconv class, filled as classes are defined (``Layer`` subclasses
#: whose names do not start with ``_``).  The one table that config- and file-loading use.
class _ClassTable(dict):
    """Keras class name -> class.  ``aliases`` (Keras' other public names of a class,
    ``Convolution1D`` for ``Conv1D``) resolve on lookup (``[]``, ``get``, ``in``), as
    tf-keras resolves them in a config; iteration, ``len`` and ``sorted`` see the
    canonical names only (the names Keras writes)."""

    def __init__(self):
        super().__init__()
        self.aliases: Dict[str, str] = {}

    def __missing__(self, key):
        if key in self.aliases:
            return dict.__getitem__(self, self.aliases[key])
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except (KeyError, TypeError):
            return default

    def __contains__(self, key):
        return dict.__contains__(self, key) or key in self.aliases


KERAS_CLASSES: Dict[str, type] = _ClassTable()


def get_layer_class(class_name: str) -> type:
    """The sepconv class for a Keras class name; ``ValueError`` listing what is known."""
    try:
        return KERAS_CLASSES[class_name]
    except KeyError:
        raise ValueError(f"Unknown Keras layer class {class_name!r}. Supported: "
                         f"{', '.join(sorted(KERAS_CLASSES))}") from None


def layer_from_config(value: Any, arg: str) -> Any:
    """``value``, or the layer a Keras config dict ``{"class_name": ..., "config": ...}``
    describes (wrappers' ``layer`` / ``backward_layer`` arguments); ``ValueError`` naming
    ``arg`` for a dict without ``class_name``."""
    if isinstance(value, dict):
        if "class_name" not in value:
            raise ValueError(f"Invalid value for argument `{arg}`. A config dict needs a "
                             f"'class_name' key. Received {arg}={value!r}")
        value = get_layer_class(value["class_name"]).from_config(value.get("config", {}))
    return value


def wrapped_layer(value: Any, arg: str = "layer") -> "Layer":
    """A wrapper's sepconv layer from ``value`` (a layer or its Keras config dict, see
    :func:`layer_from_config`); ``ValueError`` naming ``arg`` for anything else."""
    layer = layer_from_config(value, arg)
    if not isinstance(layer, Layer):
        raise ValueError(f"Invalid value for argument `{arg}`. Expected a sepconv Keras "
                         f"layer (or its config dict). Received {arg}={layer!r}")
    return layer


def _building(build):
    """Wrap a subclass' ``build``: see ``Layer.build``."""

    @functools.wraps(build)
    def wrapper(self, input_shape, device=None):
        if self.__dict__.get("_in_build"):  # a subclass' build calling super().build
            return build(self, input_shape, device=device)
        if self.built:
            return None
        before = len(self._weight_order)
        self._in_build = True
        try:
            build(self, tuple(input_shape), device=device)
        except BaseException:
            for name in self._weight_order[before:]:
                delattr(self, name)
                self._regularized.pop(name, None)
                self._constrained.pop(name, None)
            del self._weight_order[before:]
            raise
        finally:
            self._in_build = False
        self._after_build()
        return None

    return wrapper


_DEFERRED = threading.local()


@contextlib.contextmanager
def deferred_initialization():
    """Within this context, layers create their floating-point weights filled with NaN
    instead of drawing them from their initializers; on leaving it without an error, every
    such weight still entirely NaN (nothing wrote it) is drawn from its initializer then.

    The model-file loader builds under it: the file then overwrites every weight, so the
    draws only cost time (torch's truncated normal: 5.8 of ResNetRS50's 8.4 s load).  A
    weight the file leaves unwritten still gets its initializer's values, never NaN (a file
    weight that is entirely NaN would be redrawn too)."""
    outer = getattr(_DEFERRED, "pending", None)
    pending: list = []
    _DEFERRED.pending = pending
    try:
        yield
    finally:
        _DEFERRED.pending = outer
    if outer is not None:  # nested: the outer context draws them
        outer.extend(pending)
        return
    with torch.no_grad():
        for layer, name, initializer in pending:
            param = getattr(layer, name, None)
            if isinstance(param, torch.Tensor) and bool(torch.isnan(param).all()):
                value = initializer(tuple(param.shape), dtype=param.dtype, device=param.device)
                param.copy_(torch.as_tensor(value, dtype=param.dtype, device=param.device))


class Layer(torch.nn.Module):
    """Base of sepconv's Keras layers (see the module docstring)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            KERAS_CLASSES[cls.__name__] = cls
        if "build" in cls.__dict__:
            cls.build = _building(cls.__dict__["build"])

    #: Every weight name the layer may create, in Keras' order.
    WEIGHT_NAMES: Tuple[str, ...] = ()
    #: The weights this instance has, in ``get_weights`` order; filled by ``add_weight``.
    _weight_order: List[str]

    def __init__(self, *, input_shape=None, batch_input_shape=None, batch_size=None,
                 dtype=None, name=None, trainable=None, weights=None,
                 activity_regularizer=None):
        super().__init__()
        if name is None:
            name = unique_name(snake_case(type(self).__name__))
        elif not isinstance(name, str) or not name:
            raise TypeError(f"Invalid type for argument `name`. Expected a non-empty string. "
                            f"Received name={name!r}")
        else:
            _used_names.add(name)
        self.name = name
        self.dtype_policy = DTypePolicy(dtype)
        self._trainable = True if trainable is None else check_bool(trainable, "trainable")
        self.activity_regularizer = _regularizers.get(activity_regularizer,
                                                      "activity_regularizer")
        input_shape = check_shape(input_shape, "input_shape")
        batch_input_shape = check_shape(batch_input_shape, "batch_input_shape")
        if batch_size is not None:
            batch_size = check_count(batch_size, "batch_size")
        #: The shape argument the user passed, for messages: (name, value as passed).
        self._shape_argument = (
            ("batch_input_shape", batch_input_shape) if batch_input_shape is not None
            else ("input_shape", input_shape))
        if batch_input_shape is None and input_shape is not None:
            batch_input_shape = (batch_size,) + input_shape
        self.batch_input_shape = batch_input_shape
        if weights is not None and not isinstance(weights, (list, tuple)):
            raise TypeError(f"Invalid type for argument `weights`. Expected a list of arrays. "
                            f"Received weights of type {type(weights).__name__}")
        self._initial_weights = None if weights is None else list(weights)
        self._weight_order = []
        self._regularized: Dict[str, Any] = {}
        self._constrained: Dict[str, Any] = {}
        self._activity_loss: Optional[torch.Tensor] = None
        self.built = False

    # -- building ------------------------------------------------------------------------
    def _finish_init(self) -> None:
        """Call at the end of a subclass ``__init__``: builds now if the shape is known."""
        if self.batch_input_shape is not None:
            self._build_checked(self.batch_input_shape, device=None)

    def _build_checked(self, input_shape, device) -> None:
        self.build(tuple(input_shape), device=device)

    def _after_build(self) -> None:
        """What follows every ``build`` (run by the wrapper ``__init_subclass__`` puts
        around it, so ``layer.build(shape)`` called by the user counts too)."""
        self.built = True
        if self._constrained:
            _constraints.track(self)
        if self._initial_weights is not None:
            weights, self._initial_weights = self._initial_weights, None
            self.set_weights(weights)

    def build(self, input_shape: Tuple[Optional[int], ...], device=None) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included).

        Subclasses override it; every override is wrapped so that, as in Keras, the layer
        is ``built`` afterwards (a later call creates no second set of weights), a second
        ``build`` is a no-op, and a failed one leaves no half-made weights behind.
        """
        raise NotImplementedError

    def _input_channels(self, input_shape, rank: int) -> int:
        """The channel count of a build shape of ``rank`` axes, which must be defined (the
        convolution layers' ``build``; they provide ``_layout`` and ``_channels_axis``)."""
        if len(input_shape) != rank:
            raise ValueError(f"Layer {self.name!r} expects input of rank {rank}, "
                             f"{self._layout()}. Received input of shape "
                             f"{tuple(input_shape)}")
        channels = input_shape[self._channels_axis]
        if channels is None:
            raise ValueError(f"The channel dimension of the inputs of layer {self.name!r} "
                             f"should be defined. Received input_shape={tuple(input_shape)}")
        return check_count(channels, "input channels")

    def _check_shape_rank(self) -> None:
        """Construction-time check that ``input_shape`` / ``batch_input_shape`` has the
        ``RANK + 2`` axes of ``_layout()`` (shown without the batch for ``input_shape``),
        the message naming the argument the user passed."""
        arg, value = self._shape_argument
        if len(self.batch_input_shape) != self.RANK + 2:
            layout = self._layout()
            expected = layout if arg == "batch_input_shape" else \
                "(" + layout[len("(batch, "):]
            raise ValueError(f"Invalid value for argument `{arg}`. Expected {expected} for "
                             f"a {self.RANK}D layer. Received {arg}={value}")

    def _check_shape_channels(self, check_output) -> None:
        """Construction-time checks of ``input_shape`` / ``batch_input_shape`` beyond its
        rank: at least one input channel where the channels are given, and an output that
        ``check_output(batch_input_shape)`` accepts (its ``ValueError`` re-raised), each
        message naming the argument the user passed (the layer provides
        ``_channels_axis``)."""
        arg, value = self._shape_argument
        shape = self.batch_input_shape
        channels = shape[self._channels_axis]
        if channels is not None and channels < 1:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected at least one "
                             f"input channel. Received {arg}={value}")
        self._check_shape_output(check_output)

    def _check_shape_output(self, check_output) -> None:
        """``check_output(batch_input_shape)`` at construction, its ``ValueError`` re-raised
        naming the shape argument the user passed."""
        arg, value = self._shape_argument
        try:
            check_output(self.batch_input_shape)
        except ValueError as err:
            raise ValueError(f"Invalid value for argument `{arg}`: {err}. "
                             f"Received {arg}={value}") from None

    def _geometry_repr(self, parts: List[str]) -> List[str]:
        """``extra_repr``'s convolution geometry, appended to ``parts`` where not the
        default: strides, padding, output_padding (transposed convolutions), dilation_rate
        (the layer provides ``RANK``, ``strides``, ``padding``, ``dilation_rate``)."""
        ones = (1,) * self.RANK
        if self.strides != ones:
            parts.append(f"strides={self.strides}")
        if self.padding != "valid":
            parts.append(f"padding={self.padding!r}")
        if getattr(self, "output_padding", None) is not None:
            parts.append(f"output_padding={self.output_padding}")
        if self.dilation_rate != ones:
            parts.append(f"dilation_rate={self.dilation_rate}")
        return parts

    def _repr_tail(self, parts: List[str]) -> str:
        """``extra_repr``'s common end: a non-default data_format, activation, use_bias and
        dtype, then the name."""
        from .. import activations as _activations
        if getattr(self, "data_format", "channels_last") != "channels_last":
            parts.append(f"data_format={self.data_format!r}")
        if hasattr(self, "activation"):
            act = _activations.serialize(self.activation)
            if act != "linear":
                parts.append(f"activation={act!r}")
        if getattr(self, "use_bias", True) is False:
            parts.append("use_bias=False")
        if self.dtype_policy.name != "float32":
            parts.append(f"dtype={self.dtype_policy.name!r}")
        parts.append(f"name={self.name!r}")
        return ", ".join(parts)

    def _apply(self, fn, recurse=True):
        # module.double() / .half() / .to(dtype) change the weights' dtype: the layer then
        # computes in that dtype, as a torch module would (its policy follows the weights).
        out = super()._apply(fn, recurse)
        params = list(self.parameters(recurse=False))
        if params and params[0].is_floating_point() and \
                params[0].dtype != self.dtype_policy.variable:
            self.dtype_policy = DTypePolicy(params[0].dtype)
        return out

    def __setstate__(self, state) -> None:
        # copy.deepcopy and unpickling (torch.load of a whole model) make a new module
        # without __init__ or build: register its constraints for the optimizer hook too.
        super().__setstate__(state)
        if self.__dict__.get("built") and self.__dict__.get("_constrained"):
            _constraints.track(self)

    def add_weight(self, name: str, shape: Sequence[int], initializer, regularizer=None,
                   constraint=None, device=None) -> torch.nn.Parameter:
        """Create parameter ``name`` of Keras ``shape`` with a Keras initializer."""
        pending = getattr(_DEFERRED, "pending", None)
        if pending is not None and self.dtype_policy.variable.is_floating_point:
            value = torch.full(tuple(shape), float("nan"), dtype=self.dtype_policy.variable,
                               device=device)
            pending.append((self, name, initializer))
        else:
            value = initializer(tuple(shape), dtype=self.dtype_policy.variable, device=device)
        value = torch.as_tensor(value, dtype=self.dtype_policy.variable, device=device)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"The initializer for `{name}` returned shape "
                             f"{tuple(value.shape)}, expected {tuple(shape)}")
        param = torch.nn.Parameter(value.detach().clone(), requires_grad=self._trainable)
        self.register_parameter(name, param)
        self._weight_order.append(name)
        if regularizer is not None:
            self._regularized[name] = regularizer
        if constraint is not None:
            self._constrained[name] = constraint
        return param

    def _prepare_input(self, x) -> torch.Tensor:
        """Tensor in the compute dtype, building the layer on first use."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x) if not isinstance(x, np.ndarray) else x)
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"Layer {self.name!r} expects real numbers. Received input of "
                            f"dtype {x.dtype}")
        if x.dtype != self.dtype_policy.compute:
            x = x.to(self.dtype_policy.compute)
        shape = tuple(x.shape)
        if not self.built:
            self._build_checked(shape, device=x.device)
        if not self._INPUT_CHECK_BY_SHAPE or torch.compiler.is_compiling() \
                or torch.compiler.is_exporting():
            self._check_input(shape)
        else:  # the last shape that passed, with the channels it was checked against
            key = (shape, self.__dict__.get("input_channels"))
            if self.__dict__.get("_input_checked") != key:
                self._check_input(shape)
                self.__dict__["_input_checked"] = key
        return x

    #: Whether :meth:`_check_input` depends only on the input shape and the built input
    #: channels (the convolutions: their checks, redone on every call, were ~5-10 us of
    #: per-call Python, bench/README.md "Per-call cost"): a shape that passed is not
    #: checked again until the shape or ``input_channels`` changes (not while compiling or
    #: exporting, whose shapes may be symbolic).
    _INPUT_CHECK_BY_SHAPE = False

    def _check_input(self, shape: Tuple[int, ...]) -> None:
        pass

    def _weight(self, name: str) -> torch.Tensor:
        """A weight in the compute dtype (a differentiable cast under ``mixed_*``)."""
        w = getattr(self, name)
        return w if w.dtype == self.dtype_policy.compute else w.to(self.dtype_policy.compute)

    def _record_activity(self, y: torch.Tensor) -> None:
        if self.activity_regularizer is not None:
            # tf-keras divides the activity penalty by the batch size.
            self._activity_loss = self.activity_regularizer(y) / y.shape[0]

    # -- masks (Keras' timestep masks) --------------------------------------------------------
    #: Whether the layer takes an incoming Keras mask (tf-keras' ``supports_masking``):
    #: pass-through layers forward it, consumers (recurrent layers, Softmax,
    #: GlobalAveragePooling1D) use it.  Where False, a model drops the mask at this layer
    #: (tf-keras 2.21 does the same: it raises only when ``compute_mask`` is called).
    supports_masking = False
    #: The graph runners' other flags (:mod:`sepconv.layers.masking`, ``KerasFunctional``),
    #: declared here so that asking costs a class look-up: on a module that lacks them
    #: torch's ``Module.__getattr__`` builds an ``AttributeError`` (~2-5 us, three a layer
    #: of every model call).  Whether the layer's output that *is* an input tensor keeps
    #: that input's mask (a cast to the same dtype, an identity ``Lambda``):
    keeps_mask_of_returned_input = False
    #: Whether Keras 3 drops the Keras masks of this call's inputs (its attention layers):
    keras3_strips_input_masks = False

    def compute_mask(self, inputs, mask=None):
        """The mask of the outputs, tf-keras' ``Layer.compute_mask``: the input mask where
        the layer ``supports_masking``, else ``None`` (a mask given to a layer that does not
        support masking is a ``TypeError``, as in tf-keras).  Sources (``Masking``,
        ``Embedding(mask_zero=True)``) and consumers override it."""
        if not self.supports_masking:
            flat = mask if isinstance(mask, (list, tuple)) else [mask]
            if any(m is not None for m in flat):
                raise TypeError(f"Layer {self.name} does not support masking, but was "
                                f"passed an input_mask: {mask}")
            return None
        return mask

    # -- Keras protocol ------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freezing a layer freezes its own weights and every sub-layer (the wrapped layers
        of ``Bidirectional`` and ``TimeDistributed``), as in Keras."""
        self._trainable = check_bool(value, "trainable")
        for p in self.parameters(recurse=False):
            p.requires_grad_(self._trainable)
        for sub in self.children():
            if isinstance(sub, Layer):
                sub.trainable = self._trainable

    @property
    def dtype(self) -> str:
        return self.dtype_policy.name

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.dtype_policy.compute

    @property
    def losses(self) -> List[torch.Tensor]:
        """The last call's activity penalty, then the weight penalties of the regularizers
        (tf-keras' and Keras 3's order)."""
        out = [] if self._activity_loss is None else [self._activity_loss]
        out += [reg(getattr(self, name)) for name, reg in self._regularized.items()
                if self.built]
        return out

    def constrained_parameters(self):
        return [(getattr(self, name), c) for name, c in self._constrained.items()
                if self.built]

    @property
    def weights(self) -> List[torch.nn.Parameter]:
        return [getattr(self, n) for n in self._weight_order]

    def get_weights(self) -> List[np.ndarray]:
        """Weights as numpy arrays in Keras' order and shapes."""
        return [w.detach().cpu().float().numpy() if w.dtype == torch.bfloat16
                else w.detach().cpu().numpy() for w in self.weights]

    def _build_from_weights(self, weights: List[Any]) -> None:
        """Build an unbuilt layer for the input shape its weights tell."""
        if not self.built:
            shape = self._input_shape_from_weights(weights)
            if shape is None:
                raise ValueError(f"Layer {self.name!r} is not built and its input shape "
                                 f"cannot be told from the given weights")
            self._build_checked(shape, device=None)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load Keras-ordered, Keras-shaped arrays; ``ValueError`` on count/shape mismatch."""
        weights = list(weights)
        self._build_from_weights(weights)
        expected = self.weights
        if len(weights) != len(expected):
            raise ValueError(f"Layer {self.name!r} expects {len(expected)} weights "
                             f"({', '.join(self._weight_order)}), but received "
                             f"{len(weights)} weights")
        arrays = []
        for name, param, value in zip(self._weight_order, expected, weights):
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
            else:
                value = np.asarray(value)
                if value.dtype.name == "bfloat16":
                    value = value.astype(np.float32)  # Keras' ml_dtypes bfloat16 arrays
                value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(f"Weight `{name}` of layer {self.name!r} has shape "
                                 f"{tuple(param.shape)}; received a value of shape "
                                 f"{tuple(value.shape)}")
            arrays.append(value)
        with torch.no_grad():
            for param, value in zip(expected, arrays):
                param.copy_(value.to(param.dtype))

    def _input_shape_from_weights(self, weights) -> Optional[Tuple]:
        return None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if not self.built:
            # The saved tensors tell the input channels (their shapes are Keras').
            saved = [state_dict[prefix + n] for n in self.WEIGHT_NAMES
                     if prefix + n in state_dict]
            shape = self._input_shape_from_weights(saved) if saved else None
            if shape is not None:
                self._build_checked(shape, device=None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    #: A kernel-and-bias layer's Keras objects, in Keras' config order.
    KERNEL_OBJECTS = ("kernel_initializer", "bias_initializer", "kernel_regularizer",
                      "bias_regularizer", "activity_regularizer", "kernel_constraint",
                      "bias_constraint")

    def objects_config(self, names: Sequence[str] = KERNEL_OBJECTS) -> Dict[str, Any]:
        """``{name: Keras config}`` of the layer's initializers, regularizers and
        constraints ``names`` (the attributes of those names)."""
        return {name: _serialize(getattr(self, name)) for name in names}

    def base_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"name": self.name, "trainable": self.trainable,
                                  "dtype": self.dtype_policy.name}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = tuple(self.batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config: Dict[str, Any]):
        """Build a layer from ``get_config()`` output (tf-keras or Keras 3 configs too)."""
        config = dict(config)
        if "batch_shape" in config and "batch_input_shape" not in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        known = cls._config_keys()
        return cls(**{k: v for k, v in config.items() if k in known})

    @classmethod
    def _config_keys(cls) -> set:
        import inspect
        return set(inspect.signature(cls.__init__).parameters) - {"self"}


