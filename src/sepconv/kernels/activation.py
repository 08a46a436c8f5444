"""``tanh`` and ``sigmoid`` with TensorFlow's float32 CPU numbers, for
:func:`sepconv.activations.tanh` / :func:`~sepconv.activations.sigmoid`; and on them
``swish`` / ``silu`` (``tf.nn.silu`` and its custom gradient), ``exp``, ``elu``, ``selu``,
``softplus`` (TensorFlow's ``Exp`` / ``Elu`` / ``Selu`` / ``Softplus`` functors on Eigen's
``pexp_float`` and ``log1p``, gradients as TensorFlow's), ``mish`` (tf-keras'
``x * tanh(softplus(x))`` of those) and ``softsign`` (its ``SoftsignGrad``).

torch's CPU ``tanh`` (Sleef, 1.0 ulp) differs from TensorFlow's in about half the
elements of a normal draw (up to 5 ulp), ``sigmoid`` in about 60% (up to 7 ulp), and
torch's float32 ``tanh`` is slow on one thread (1.4 ms for 512k elements where TensorFlow's
rational approximation takes 0.2).  Here both run through :mod:`._activation_native`, the
C routine that computes what TensorFlow 2.21 computes (Eigen's approximations, see that
module), forward and backward (``TanhGrad`` ``dy * (1 - y * y)``, ``SigmoidGrad``, from
the saved output, as TensorFlow's gradients do).

Where: contiguous-able CPU float32 tensors in eager mode and under torch.compile (the
operations are opaque torch custom ops, ``torch.ops.sepconv.tanh_cpu`` /
``sigmoid_cpu`` with fake implementations and their ``..._backward`` ops); torch's own
``tanh`` / ``sigmoid`` everywhere else: other devices and dtypes, ``torch.jit.trace`` and
``torch.export`` (graphs of standard ops), torch.func transforms (no vmap rule), CPU
autocast, no C compiler, ``ENABLED = False``.  Under ``create_graph=True`` the backward is
the same formula in differentiable torch operations (double backward).

Threads: calls of 2^16 elements and more go through the library's thread policy
(:mod:`.threads`); the routine shares the elements out between torch's OpenMP threads.

The swish, softplus and mish gradients need the input (saved), the others the output.
Like sigmoid, the exp-based results of the last ``n % 8`` elements come from the C
library (``expf``, ``log1pf``), as TensorFlow's executor computes them.  Differences
left (denormals): ``mish``'s and ``softsign``'s torch multiplications / divisions keep
results below 2^-126 that TensorFlow flushes to 0.

What TensorFlow does not compute with these: a ``Dense`` layer's ``MatMul + BiasAdd +
Tanh/Sigmoid`` on 2D inputs inside a ``tf.function`` (``model.fit``'s train step, ``tf.function(model)``;
not ``predict`` nor eager calls) is fused by Grappler's oneDNN remapper into
``_MklFusedMatMul`` with oneDNN's eltwise tanh / logistic, which differ from Eigen's in
~45-60% of elements (up to 4 ulp).  ``Conv1D``, ``Conv2D`` and ``Dense`` on 3D inputs
(``Tensordot``) keep Eigen's ops there (checked).
"""

from __future__ import annotations

import torch

from . import _activation_native as _native
from . import graphs as _graphs
from . import threads as _policy

#: The switch :func:`takes` reads (tests and benchmarks alternate it).
ENABLED = True
#: How many times the C routine ran (tests assert it did).
CALLS = 0


def takes(x: torch.Tensor) -> bool:
    """Whether the C routine runs ``x``: a CPU float32 tensor, eager or compiled, not
    traced / exported, no torch.func transform or CPU autocast, the routine built."""
    if not ENABLED or x.dtype != torch.float32 or not x.is_cpu:
        return False
    if _graphs.standard_ops_wanted(compiled=True):  # (custom ops: they compile)
        return False
    return _available()


def _available() -> bool:
    """Whether the routine is built (building it on the first call: torch.compile runs
    this eagerly, where tracing the build's lock would fail)."""
    return _native.load() is not None


# torch.compiler.assume_constant_result(_available): all that decorator does, without its
# import of torch._dynamo (which imports Triton where it is installed): ~1.5 s of CPU at
# `import sepconv` otherwise.  tests/test_activation_native.py compiles a first call.
_available._dynamo_marked_constant = True


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)``: TensorFlow's numbers on CPU float32 (see the module), torch's elsewhere."""
    if not takes(x):
        return torch.tanh(x)
    if _graphs.plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _apply_tanh(x)
        return _compute(_native.TANH, x)
    return _tanh_op(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(x)``: TensorFlow's numbers on CPU float32 (see the module), torch's
    elsewhere."""
    if not takes(x):
        return torch.sigmoid(x)
    if _graphs.plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _apply_sigmoid(x)
        return _compute(_native.SIGMOID, x)
    return _sigmoid_op(x)


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` as ``tf.nn.silu`` (tf-keras' ``swish``): TensorFlow's numbers on
    CPU float32, forward and its custom gradient (see the module); torch's ``silu``
    elsewhere."""
    if not takes(x):
        return torch.nn.functional.silu(x)
    if _graphs.plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _apply_swish(x)
        return _compute(_native.SWISH, x)
    return _swish_op(x)


def exp(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` as TensorFlow's ``Exp`` (Eigen's ``pexp_float``, the C library's
    ``expf`` for the scalar tail) on CPU float32; torch's ``exp`` elsewhere."""
    return _unary(_native.EXP, x, torch.exp)


def elu(x: torch.Tensor) -> torch.Tensor:
    """``tf.nn.elu``: ``exp(x) - 1`` (TensorFlow's exp, not ``expm1``) where ``x < 0``, and
    ``EluGrad`` from the output, on CPU float32; torch's ``elu`` elsewhere."""
    return _unary(_native.ELU, x, torch.nn.functional.elu)


def selu(x: torch.Tensor, fallback) -> torch.Tensor:
    """``tf.nn.selu`` (``scale_alpha * (exp(x) - 1)`` where ``x < 0``, ``scale * x``
    elsewhere, float32 constants) and ``SeluGrad`` on CPU float32; ``fallback(x)``
    elsewhere."""
    return _unary(_native.SELU, x, fallback)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``tf.math.softplus``: TensorFlow's ``Softplus`` functor (``x`` above 13.942385,
    ``exp(x)`` below -13.942385, ``log1p(exp(x))`` between, with Eigen's ``exp`` and
    ``log1p``) and its gradient ``dy * sigmoid(x)`` on CPU float32; torch's ``softplus``
    elsewhere."""
    return _unary(_native.SOFTPLUS, x, torch.nn.functional.softplus)


def mish(x: torch.Tensor) -> torch.Tensor:
    """tf-keras' ``mish``: ``x * tanh(softplus(x))`` of TensorFlow's ops (so its gradient
    is theirs, composed) on CPU float32; torch's ``mish`` elsewhere."""
    if not takes(x):
        return torch.nn.functional.mish(x)
    return x * tanh(softplus(x))


def softsign(x: torch.Tensor) -> torch.Tensor:
    """``tf.nn.softsign``: ``x / (|x| + 1)`` with TensorFlow's gradient ``SoftsignGrad``
    (``dy / (|x| + 1)^2``, one division; torch's autograd of the quotient rounds otherwise)
    where :func:`takes` ``x``, torch's ``softsign`` elsewhere.  Torch operations both ways
    (denormals are not flushed)."""
    if not takes(x) or not (x.requires_grad and torch.is_grad_enabled()):
        return torch.nn.functional.softsign(x)
    return _Softsign.apply(x)


class _Softsign(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x / (x.abs() + 1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        d = x.abs() + 1
        return dy / (d * d)


def _unary(op: int, x: torch.Tensor, fallback) -> torch.Tensor:
    """The routine's ``op`` (its gradient from the saved output) where :func:`takes`,
    ``fallback(x)`` elsewhere."""
    if not takes(x):
        return fallback(x)
    if _graphs.plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _APPLY[op](x)
        return _compute(op, x)
    return _OPS[op](x)


def _compute(op: int, a: torch.Tensor, b=None) -> torch.Tensor:
    """The routine's ``op`` on ``a`` (and ``b``): a new contiguous tensor of ``a``'s shape."""
    global CALLS
    a = a.contiguous()
    if b is not None:
        b = b.contiguous()
    out = torch.empty_like(a)  # a is contiguous: so is out
    n = a.numel()
    CALLS += 1
    if n < _policy.MIN_WORK:  # one thread: the routine runs one block
        _native.compute(op, a, b, out, 1)
    else:
        _policy.run(_NAMES[op], n,
                    lambda: _native.compute(op, a, b, out, torch.get_num_threads()),
                    (n.bit_length(),))
    return out


_NAMES = {_native.TANH: "tanh", _native.SIGMOID: "sigmoid", _native.TANH_GRAD: "tanh grad",
          _native.SIGMOID_GRAD: "sigmoid grad", _native.SWISH: "swish",
          _native.SWISH_GRAD: "swish grad", _native.EXP: "exp", _native.ELU: "elu",
          _native.SELU: "selu", _native.EXP_GRAD: "exp grad", _native.ELU_GRAD: "elu grad",
          _native.SELU_GRAD: "selu grad", _native.SOFTPLUS: "softplus",
          _native.SOFTPLUS_GRAD: "softplus grad"}
_SELU_SCALE, _SELU_SCALE_ALPHA = 1.0507009873554804934193349852946, \
    1.7580993408473768599402175208123


def _grad_formula(op: int, y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """The backward in differentiable torch operations (double backward)."""
    if op == _native.TANH:
        return dy * (1 - y * y)
    if op == _native.EXP:
        return dy * y
    if op == _native.ELU:
        return torch.where(y < 0, (y + 1) * dy, dy)
    if op == _native.SELU:
        return torch.where(y < 0, dy * (y + _SELU_SCALE_ALPHA), dy * _SELU_SCALE)
    if op == _native.SOFTPLUS:  # y is the input x here
        return dy * torch.sigmoid(y)
    if op == _native.SWISH:  # y is the input x here
        s = torch.sigmoid(y)
        return dy * (s * (1 + y * (1 - s)))
    return dy * (y * (1 - y))


def _backward(op: int, y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    if dy is None:
        return None
    if torch.is_grad_enabled():  # create_graph=True
        return _grad_formula(op, y, dy)
    if dy.dtype != torch.float32 or dy.shape != y.shape:
        return _grad_formula(op, y, dy)
    grad_op = {_native.TANH: _native.TANH_GRAD, _native.SIGMOID: _native.SIGMOID_GRAD,
               _native.SWISH: _native.SWISH_GRAD, _native.EXP: _native.EXP_GRAD,
               _native.ELU: _native.ELU_GRAD, _native.SELU: _native.SELU_GRAD,
               _native.SOFTPLUS: _native.SOFTPLUS_GRAD}[op]
    if _graphs.plain(y, dy):
        return _compute(grad_op, y, dy)
    return _BACKWARD_OPS[op](y, dy)


# -- the custom ops: opaque to torch.compile, a fake for shapes -----------------------------

@torch.library.custom_op("sepconv::tanh_cpu", mutates_args=(), device_types="cpu")
def _tanh_op(x: torch.Tensor) -> torch.Tensor:
    return _compute(_native.TANH, x)


@torch.library.custom_op("sepconv::sigmoid_cpu", mutates_args=(), device_types="cpu")
def _sigmoid_op(x: torch.Tensor) -> torch.Tensor:
    return _compute(_native.SIGMOID, x)


@torch.library.custom_op("sepconv::tanh_cpu_backward", mutates_args=(), device_types="cpu")
def _tanh_backward_op(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return _compute(_native.TANH_GRAD, y, dy)


@torch.library.custom_op("sepconv::sigmoid_cpu_backward", mutates_args=(), device_types="cpu")
def _sigmoid_backward_op(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return _compute(_native.SIGMOID_GRAD, y, dy)


@torch.library.custom_op("sepconv::swish_cpu", mutates_args=(), device_types="cpu")
def _swish_op(x: torch.Tensor) -> torch.Tensor:
    return _compute(_native.SWISH, x)


@torch.library.custom_op("sepconv::swish_cpu_backward", mutates_args=(), device_types="cpu")
def _swish_backward_op(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return _compute(_native.SWISH_GRAD, x, dy)


_BACKWARD_OPS = {_native.TANH: _tanh_backward_op, _native.SIGMOID: _sigmoid_backward_op,
                 _native.SWISH: _swish_backward_op}


def _fake(x, *rest):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


for _op in (_tanh_op, _sigmoid_op, _tanh_backward_op, _sigmoid_backward_op, _swish_op,
            _swish_backward_op):
    _op.register_fake(_fake)


def _save_output(ctx, inputs, output):
    ctx.save_for_backward(output)


_tanh_op.register_autograd(lambda ctx, dy: _backward(_native.TANH, ctx.saved_tensors[0], dy),
                           setup_context=_save_output)
_sigmoid_op.register_autograd(
    lambda ctx, dy: _backward(_native.SIGMOID, ctx.saved_tensors[0], dy),
    setup_context=_save_output)


def _save_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


_swish_op.register_autograd(lambda ctx, dy: _backward(_native.SWISH, ctx.saved_tensors[0], dy),
                            setup_context=_save_input)


class _Tanh(torch.autograd.Function):
    """The op's autograd formula for eager calls (no custom-op dispatch per call)."""

    @staticmethod
    def forward(x):
        return _compute(_native.TANH, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, dy):
        return _backward(_native.TANH, ctx.saved_tensors[0], dy)


class _Sigmoid(torch.autograd.Function):
    """The op's autograd formula for eager calls (no custom-op dispatch per call)."""

    @staticmethod
    def forward(x):
        return _compute(_native.SIGMOID, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, dy):
        return _backward(_native.SIGMOID, ctx.saved_tensors[0], dy)


class _Swish(torch.autograd.Function):
    """The op's autograd formula for eager calls; saves the input (TensorFlow recomputes
    the sigmoid in the backward)."""

    @staticmethod
    def forward(x):
        return _compute(_native.SWISH, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, dy):
        return _backward(_native.SWISH, ctx.saved_tensors[0], dy)


# torch's C ``apply`` (as kernels/cpu.py's ``_apply_eager``: no signature binding per call)
_apply_tanh = super(torch.autograd.Function, _Tanh).apply
_apply_sigmoid = super(torch.autograd.Function, _Sigmoid).apply
_apply_swish = super(torch.autograd.Function, _Swish).apply


def _output_saving(name: str, op: int, grad_op: int, save_input: bool = False):
    """The custom ops (forward, backward) and the eager autograd ``apply`` of a routine
    operation whose gradient is computed from its output (``save_input``: its input)."""
    save = _save_input if save_input else _save_output
    def forward_impl(x: torch.Tensor) -> torch.Tensor:
        return _compute(op, x)

    def backward_impl(y: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        return _compute(grad_op, y, dy)

    forward_op = torch.library.custom_op(f"sepconv::{name}_cpu", forward_impl,
                                         mutates_args=(), device_types="cpu")
    backward_op = torch.library.custom_op(f"sepconv::{name}_cpu_backward", backward_impl,
                                          mutates_args=(), device_types="cpu")
    forward_op.register_fake(_fake)
    backward_op.register_fake(_fake)
    forward_op.register_autograd(lambda ctx, dy: _backward(op, ctx.saved_tensors[0], dy),
                                 setup_context=save)

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return _compute(op, x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            save(ctx, inputs, output)

        @staticmethod
        def backward(ctx, dy):
            return _backward(op, ctx.saved_tensors[0], dy)

    _Function.__name__ = _Function.__qualname__ = f"_{name.capitalize()}"
    _OPS[op], _BACKWARD_OPS[op] = forward_op, backward_op
    _APPLY[op] = super(torch.autograd.Function, _Function).apply


_OPS, _APPLY = {}, {}
_output_saving("exp", _native.EXP, _native.EXP_GRAD)
_output_saving("elu", _native.ELU, _native.ELU_GRAD)
_output_saving("selu", _native.SELU, _native.SELU_GRAD)
_output_saving("softplus", _native.SOFTPLUS, _native.SOFTPLUS_GRAD, save_input=True)
