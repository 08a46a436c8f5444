"""``python -m sepconv convert MODEL.h5|MODEL.keras|SAVEDMODEL_DIR OUT.pt|OUT.pt2|OUT.onnx
[--custom MODULE] [--unsafe]``.

Writes the loaded model by OUT's ending: ``.pt`` the whole module with ``torch.save``
(read it back with ``torch.load(OUT.pt, weights_only=False)`` where sepconv is
installed), ``.pt2`` a ``torch.export`` program (``torch.export.load``), ``.onnx`` an ONNX
model (``torch.onnx.export(..., dynamo=True)``), and prints the layer table, Keras
``summary()`` style.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

PROG = "python -m sepconv convert"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[1].strip())
    p.add_argument("model", help="a Keras model file: .h5 (tf-keras 2, R keras, Keras 3) "
                                 "or .keras (tf-keras 2.13+, Keras 3), or a tf-keras "
                                 "SavedModel directory")
    p.add_argument("out", help="where to write it: .pt (the torch module), .pt2 (a "
                               "torch.export program) or .onnx")
    p.add_argument("--input-shape", metavar="SHAPE", action="append", default=None,
                   help=".pt2 / .onnx: the example input's shape, batch included, e.g. "
                        "1,16000,1; once per input, in the model's input order (default: "
                        "the model's input shapes, a free size as 32, the batch as 2)")
    p.add_argument("--dynamic", metavar="AXES", default=None,
                   help=".pt2 / .onnx: the axes of every input left dynamic, e.g. 0,1, or "
                        "'none' for static shapes (default: the axes the model's input "
                        "shapes leave free, each where the model allows it)")
    p.add_argument("--custom", metavar="MODULE", action="append", default=[],
                   help="an importable Python module (or a .py file) whose CUSTOM_OBJECTS "
                        "dict maps the file's custom layer / function names to torch "
                        "modules and functions (load_keras_model's custom_objects); "
                        "may be given several times")
    p.add_argument("--unsafe", action="store_true",
                   help="run the Python bytecode of the file's Lambda layers "
                        "(load_keras_model's safe_mode=False): only for files you trust")
    return p


def _custom_objects(names: List[str]) -> dict:
    """The ``CUSTOM_OBJECTS`` of each module named (a dotted name or a ``.py`` path)."""
    import importlib
    import importlib.util
    import os
    objects: dict = {}
    for name in names:
        if name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(name))[0], name)
            if spec is None or not os.path.isfile(name):
                raise ValueError(f"--custom {name}: no such file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # torch.save pickles its classes by module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
        found = getattr(module, "CUSTOM_OBJECTS", None)
        if not isinstance(found, dict):
            raise ValueError(f"--custom {name}: the module has no CUSTOM_OBJECTS dict")
        objects.update(found)
    return objects


def main(command: str = "convert", argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    import torch

    from .files import KerasFileError
    from .models import load_keras_model, summary

    try:
        model = load_keras_model(args.model, custom_objects=_custom_objects(args.custom),
                                 safe_mode=not args.unsafe)
    except (KerasFileError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    if args.out.endswith((".pt2", ".onnx")):
        from .export import export_file
        try:
            shapes = None if args.input_shape is None else [
                _ints(v, "--input-shape") for v in args.input_shape]
            dynamic = None if args.dynamic is None else [] if \
                args.dynamic.strip().lower() == "none" else _ints(args.dynamic, "--dynamic")
            info = export_file(model, args.out, shapes, dynamic)
        except (ValueError, ImportError) as err:
            print(f"{PROG}: error: {err}", file=sys.stderr)
            return 2
    elif args.out.endswith(".pt"):
        torch.save(model, args.out)
    else:
        print(f"{PROG}: error: unknown output ending {args.out!r}: expected .pt, .pt2 or "
              ".onnx", file=sys.stderr)
        return 2
    summary(model)
    writer = "Keras 3" if model.keras_flavour == "keras3" else "tf-keras 2 / R keras"
    print(f"Written by Keras {model.keras_version or '(version not recorded)'}: computed "
          f"with the formulas of {writer}")
    if args.out.endswith(".pt"):
        print(f"Saved {type(model).__name__} to {args.out} "
              "(torch.load(path, weights_only=False))")
        return 0
    kind = "a torch.export program (torch.export.load)" if args.out.endswith(".pt2") \
        else "an ONNX model"
    print(f"Saved {kind} to {args.out}: example input shape(s) "
          f"{', '.join(str(s) for s in info['inputs'])}, dynamic axes "
          f"{', '.join(str(d) for d in info['dynamic'])}")
    if info["error"] is not None:
        print(f"Largest difference from the torch module on the example: "
              f"{info['error']:.2g} (relative to scale)")
    return 0


def _ints(text: str, option: str) -> List[int]:
    try:
        return [int(v) for v in text.replace("(", "").replace(")", "").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes integers separated by commas, e.g. 1,16000,1. "
                         f"Received {text!r}") from None
