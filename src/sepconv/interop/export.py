"""Loaded Keras models out as graphs: ``torch.export`` programs (``.pt2``) and ONNX.

A model from :func:`sepconv.load_keras_model` exports like any torch module
(``torch.export.export(model, (x,))``, ``torch.onnx.export(model, (x,), dynamo=True)``,
``torch.jit.trace``, ``torch.compile(model, fullgraph=True)``).  This module adds what the
``convert`` command needs: example inputs from the model's own input shapes and dtypes,
dynamic axes where the model leaves a size free, and one clear error for what cannot
export.

What cannot export, and says so naming the layer: text inputs (``dtype="string"``: torch
graphs hold no strings, so ``TextVectorization`` / ``StringLookup`` on raw text stay in
Python; export the model from the token ids on), and stateful recurrent layers (their
states carry over between calls, which an exported graph does not keep; export the
``stateful=False`` twin and pass ``initial_state``).  Recurrent layers with a dynamic
number of steps are recorded as one ``scan`` (ONNX ``Scan``); with a fixed one, unrolled.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

#: the size given to a free (``None``) axis in example inputs: long enough for the
#: strides and pooling of ordinary models, and not 0 or 1 (which export specialises)
FREE_SIZE = 32
#: the example batch (not 1: torch.export would fix a batch of 1)
BATCH = 2

SUFFIXES = (".pt", ".pt2", ".onnx")


def _inputs_of(model: torch.nn.Module) -> List[Tuple[str, Optional[torch.nn.Module]]]:
    """``(name, InputLayer module or None)`` per model input, in order."""
    refs = getattr(model, "input_refs", None)
    if refs is not None:  # KerasFunctional
        modules = dict(model.named_children())
        return [(r[0], modules.get(r[0])) for r in refs]
    first = next(iter(model.children()), None)
    if type(first).__name__ == "InputLayer":
        return [(first.name, first)]
    return [("input", None)]


def input_specs(model: torch.nn.Module) -> List[Tuple[str, tuple, str]]:
    """``(name, Keras shape with None for free sizes, dtype)`` of each model input."""
    shapes = list(getattr(model, "keras_input_shapes", None) or [])
    specs = []
    for i, (name, layer) in enumerate(_inputs_of(model)):
        shape = shapes[i] if i < len(shapes) else None
        if shape is None and layer is not None:
            shape = getattr(layer, "batch_input_shape", None)
        dtype = str(getattr(layer, "dtype", None) or "float32")
        specs.append((name, tuple(shape) if shape is not None else None, dtype))
    return specs


def check_exportable(model: torch.nn.Module) -> None:
    """Raise ``ValueError`` naming the input or layer that an exported graph cannot hold."""
    for name, _, dtype in input_specs(model):
        if dtype == "string":
            raise ValueError(f"Model input {name!r} takes text (dtype string): torch graphs "
                             "hold no strings, so the layers that read it (TextVectorization, "
                             "StringLookup, ...) cannot be exported; export the model from "
                             "their integer output on, and run them in Python")
    for lname, layer in model.named_modules():
        if getattr(layer, "stateful", False) is True:
            raise ValueError(f"Layer {lname!r} ({type(layer).__name__}) is stateful: its "
                             "states carry over between calls, which an exported graph does "
                             "not keep; export the model with stateful=False and pass the "
                             "states as initial_state")


def example_inputs(model: torch.nn.Module,
                   input_shapes: Optional[Sequence[Sequence[int]]] = None,
                   seed: int = 0) -> Tuple[List[torch.Tensor], List[List[int]]]:
    """Example inputs and, per input, the axes the model leaves free (``None`` in its
    Keras shape).  ``input_shapes``: one full shape per input (batch included), else the
    model's own with each free size :data:`FREE_SIZE` (the batch :data:`BATCH`).  Float
    inputs are standard normal, integer ones ones (a valid id for any vocabulary)."""
    specs = input_specs(model)
    if input_shapes is not None and len(input_shapes) != len(specs):
        raise ValueError(f"The model takes {len(specs)} input(s) "
                         f"({', '.join(s[0] for s in specs)}); received "
                         f"{len(input_shapes)} input shape(s)")
    gen = torch.Generator().manual_seed(seed)
    tensors, free = [], []
    for i, (name, shape, dtype) in enumerate(specs):
        if shape is None and input_shapes is None:
            raise ValueError(f"Model input {name!r} has no recorded shape: give "
                             "--input-shape (input_shapes)")
        free.append([a for a, s in enumerate(shape or ()) if s is None])
        if input_shapes is not None:
            size = tuple(int(s) for s in input_shapes[i])
            if shape is not None and (len(size) != len(shape) or any(
                    k is not None and k != s for k, s in zip(shape, size))):
                raise ValueError(f"Input shape {size} does not fit model input {name!r} "
                                 f"of shape {shape}")
        else:
            size = tuple(BATCH if a == 0 and s is None else FREE_SIZE if s is None else s
                         for a, s in enumerate(shape))
        if dtype == "string":
            check_exportable(model)
        if dtype.startswith(("int", "uint")) or dtype == "bool":
            tensors.append(torch.ones(size, dtype=getattr(torch, dtype)))
        else:
            dt = getattr(torch, dtype, torch.float32)
            tensors.append(torch.randn(size, generator=gen).to(
                dt if dt.is_floating_point else torch.float32))
    return tensors, free


def dynamic_shapes(model: torch.nn.Module, inputs: Sequence[torch.Tensor],
                   axes: Sequence[Sequence[int]], strict: bool = True) -> Any:
    """``torch.export``'s ``dynamic_shapes`` for ``axes`` (per input, the dynamic axes):
    ``Dim.DYNAMIC`` (``strict``: export fails where the model fixes the size) or
    ``Dim.AUTO`` (export keeps the size static where the model needs it).  A functional
    model's ``forward(*inputs)`` takes the inputs as one variadic tuple."""
    dim = torch.export.Dim.DYNAMIC if strict else torch.export.Dim.AUTO
    for x, ax in zip(inputs, axes):
        for a in ax:
            if not 0 <= a < x.dim():
                raise ValueError(f"Dynamic axis {a} is not an axis of an input of shape "
                                 f"{tuple(x.shape)}")
    dims = tuple({a: dim for a in ax} or None for ax in axes)
    if getattr(model, "input_refs", None) is not None:
        return (dims,)
    return dims


def export_program(model: torch.nn.Module, inputs: Sequence[torch.Tensor],
                   axes: Optional[Sequence[Sequence[int]]] = None, strict: bool = True):
    """``torch.export.export`` of ``model`` (put in eval mode) on ``inputs``, ``axes``
    dynamic (see :func:`dynamic_shapes`)."""
    check_exportable(model)
    model.eval()
    shapes = dynamic_shapes(model, inputs, axes, strict) if axes and any(axes) else None
    return torch.export.export(model, tuple(inputs), dynamic_shapes=shapes)


def dynamic_axes_of(program, count: int) -> List[List[int]]:
    """The axes of each of the first ``count`` user inputs that the program left dynamic."""
    out = []
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
    users = [s.arg.name for s in program.graph_signature.input_specs
             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    by_name = {n.name: n for n in placeholders}
    for name in users[:count]:
        val = by_name[name].meta.get("val")
        out.append([a for a, s in enumerate(getattr(val, "shape", ()))
                    if not isinstance(s, int)])
    return out


def _max_error(got, want) -> float:
    got = got if isinstance(got, (list, tuple)) else [got]
    want = want if isinstance(want, (list, tuple)) else [want]
    err = 0.0
    for g, w in zip(got, want):
        g = torch.as_tensor(g)
        w = torch.as_tensor(w)
        if w.numel():
            scale = max(1.0, float(w.abs().max()))
            err = max(err, float((g.double() - w.double()).abs().max()) / scale)
    return err


def export_file(model: torch.nn.Module, out: str,
                input_shapes: Optional[Sequence[Sequence[int]]] = None,
                dynamic: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Write ``model`` as a ``torch.export`` program (``out`` ends ``.pt2``) or ONNX
    (``.onnx``).  ``dynamic``: the axes made dynamic in every input (``Dim.DYNAMIC``:
    fails naming the size where the model fixes it); ``None``: the axes the model leaves
    free, each where the model allows it (``Dim.AUTO``); ``[]``: static.  Returns what
    was done: ``inputs`` (shapes), ``dynamic`` (per input, the axes left dynamic),
    ``error`` (largest difference from the eager model on the example inputs, relative
    to scale; ``None`` where onnxruntime is not installed)."""
    model.eval()
    inputs, free = example_inputs(model, input_shapes)
    axes = free if dynamic is None else [list(dynamic)] * len(inputs)
    program = export_program(model, inputs, axes, strict=dynamic is not None)
    with torch.no_grad():
        want = model(*inputs)
    info = {"inputs": [tuple(x.shape) for x in inputs],
            "dynamic": dynamic_axes_of(program, len(inputs))}
    if out.endswith(".pt2"):
        torch.export.save(program, out)
        with torch.no_grad():
            info["error"] = _max_error(program.module()(*inputs), want)
        return info
    if not out.endswith(".onnx"):
        raise ValueError(f"Unknown output ending {out!r}: expected one of {SUFFIXES}")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, tuple(inputs), dynamo=True, verbose=False)
    onnx_program.save(out)
    info["error"] = None
    try:
        import onnxruntime as ort
    except ImportError:
        return info
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    info["error"] = _max_error(session.run(None, feeds), want)
    return info
