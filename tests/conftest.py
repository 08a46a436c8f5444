"""Test-process setup shared by every test file.

Import order matters here, so it is fixed once, before any test module is imported:

- TensorFlow and Triton both register LLVM command-line options.  Importing TensorFlow
  first and Triton second (directly, or through ``torch`` when Keras 3 runs on the torch
  backend) aborts the whole process with "LLVM ERROR: inconsistency in registered
  CommandLine options".  Triton first, then TensorFlow, works.  So this file imports
  triton (when installed) and Keras 3 on the torch backend before anything can import
  TensorFlow (the tf-keras parity tests do).
- ``KERAS_BACKEND`` must be set before ``keras`` is first imported: Keras 3 reads it once.
- TensorFlow gets two threads (the CI machines have two cores) and quiet C++ logs, through
  the environment, which it reads when it initialises.  TensorFlow itself is imported
  only by the test modules that need it, so the other tests do not pay for it.
"""

from __future__ import annotations

import importlib.util
import os

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401  (must precede TensorFlow, see above)

if importlib.util.find_spec("keras") is not None:
    import keras  # noqa: F401  (torch backend; pulls triton through torch)



import pytest  # noqa: E402
import torch  # noqa: E402  (after triton, see above)


@pytest.fixture
def torch_single_thread():
    """One torch thread for tests on tiny tensors: on a loaded two-core machine, OpenMP
    threads waiting for each other made a float64 gradcheck 40x slower (3 s, not 0.07 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The README's test command runs the suite in pytest-xdist workers (``-n auto``), one test
# file at a time per worker (pyproject's addopts: ``--dist loadfile --no-loadscope-reorder``):
# a worker that is free takes the next file in collection order.  The files measured slowest go first,
# so that the workers finish together instead of one running a long file alone at the end
# (a full run under xdist on the 2-core CI machine, 2026-11-27: seconds of test time).
SLOWEST_FIRST = (
    "test_export_models.py",  # 398
    "test_applications.py",  # 285
    "test_kernel_triton.py",  # 191
    "test_train.py",  # 176
    "test_fuzz_tfkeras.py",  # 94
    "test_model_files_saved_model.py",  # 93
    "test_parity_masking_tfkeras.py",  # 85
    "test_ported_models.py",  # 77
    "test_keras3_tensorflow.py",  # 62 (alone, not yet in a full run)
    "test_fuzz_model_files.py",  # 57
    "test_model_files_nested.py",  # 54
)


def pytest_collection_modifyitems(session, config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    missing = [f for f in SLOWEST_FIRST if not os.path.exists(os.path.join(here, f))]
    if missing:  # a renamed file would silently lose its place
        raise pytest.UsageError(f"tests/conftest.py SLOWEST_FIRST names missing files: {missing}")
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))
