"""``python -m sepconv convert MODEL.h5|MODEL.keras OUT.pt``.

Writes the whole loaded module with ``torch.save`` (read it back with
``torch.load(OUT.pt, weights_only=False)`` where sepconv is installed) and prints the
layer table, Keras ``summary()`` style.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

PROG = "python -m sepconv convert"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[1].strip())
    p.add_argument("model", help="a Keras model file: .h5 (tf-keras 2, R keras, Keras 3) "
                                 "or .keras (tf-keras 2.13+, Keras 3)")
    p.add_argument("out", help="where to write the torch module (.pt)")
    return p


def main(command: str = "convert", argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    import torch

    from .files import KerasFileError
    from .models import load_keras_model, summary

    try:
        model = load_keras_model(args.model)
    except (KerasFileError, FileNotFoundError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    torch.save(model, args.out)
    summary(model)
    writer = "Keras 3" if model.keras_flavour == "keras3" else "tf-keras 2 / R keras"
    print(f"Written by Keras {model.keras_version or '(version not recorded)'}: computed "
          f"with the formulas of {writer}")
    print(f"Saved {type(model).__name__} to {args.out} (torch.load(path, weights_only=False))")
    return 0
