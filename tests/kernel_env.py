"""Pick sepconv's kernel for a block of a test (``SEPCONV_KERNEL``, read at each call)."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def kernel_choice(name: str):
    """``SEPCONV_KERNEL=name`` for the block ("" is the default dispatch)."""
    old = os.environ.get("SEPCONV_KERNEL")
    os.environ["SEPCONV_KERNEL"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["SEPCONV_KERNEL"]
        else:
            os.environ["SEPCONV_KERNEL"] = old
