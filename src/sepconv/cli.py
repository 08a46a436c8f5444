"""``python -m sepconv <command>``: train, evaluate, bench, convert.

Each command's module is imported only when that command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "train": ("sepconv.train", "train a separable-conv network on a bundled data set"),
        "evaluate": ("sepconv.train", "evaluate a saved model on its test split"),
        "bench": ("sepconv.bench", "benchmark sepconv against its peers"),
        "convert": ("sepconv.interop.convert", "convert a Keras .h5/.keras model to "
                    "torch (.pt), a torch.export program (.pt2) or ONNX (.onnx)"),
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog="python -m sepconv")
        sub = parser.add_subparsers(dest="command", metavar="command")
        for name, (_, help_) in commands.items():
            sub.add_parser(name, help=help_, add_help=False)
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(commands)}")
        parser.print_help()
        return 0 if argv else 2
    import importlib
    module = importlib.import_module(commands[argv[0]][0])
    return int(module.main(argv[0], argv[1:]) or 0)
