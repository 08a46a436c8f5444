"""Keras 3.15 on its TensorFlow backend (R keras3's default, and Python Keras 3's): the
optimizer table of test_optimizers.py, the loss cases of test_losses.py and the compiled
files of test_keras_training.py, each computed by that backend in ONE child process
(this process holds Keras 3 on torch: the backend is fixed when keras is first imported)
and compared with ours as those files compare theirs.

Its optimizers step differently from Keras 3 on torch (its own foreach rules), up to
1.5e-4 apart in float64 after 5 steps: ours follow it with ``flavour="keras3_tf"``, and
``load_keras_training`` picks that flavour for a file this backend wrote."""

import os
import pickle

import numpy as np
import pytest
import torch

import test_keras_training
import test_losses
import test_optimizers
from keras_files import run_keras3_tensorflow

pytestmark = pytest.mark.slow  # (the child: TensorFlow's import, 8 fits; 40 s)

#: the child: everything computed once, pickled
CHILD = """
    import pickle, sys
    import test_keras_training, test_losses, test_optimizers
    root = sys.argv[1]
    results = {"steps": test_optimizers._keras_steps(keras),
               "losses": [per_dtype for _, per_dtype in test_losses._tf_reference(keras)],
               "fitted": test_keras_training._fitted(keras, root, (".keras", ".h5"))}
    with open(os.path.join(root, "results.pkl"), "wb") as f:
        pickle.dump(results, f)
"""


@pytest.fixture(scope="module")
def keras3_tf(tmp_path_factory):
    pytest.importorskip("keras")
    root = str(tmp_path_factory.mktemp("keras3_tf"))
    run_keras3_tensorflow(CHILD, root)
    with open(os.path.join(root, "results.pkl"), "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_steps_equal(keras3_tf, dtype):
    reference = {(*key, "keras3_tf"): w for key, w in keras3_tf["steps"].items()}
    failures = test_optimizers._failures(reference, dtype, "keras3_tf")
    assert not failures, "\n".join(failures)


def _keras3_formula(case) -> bool:
    """Where Keras 3 (on every backend) computes another formula than tf-keras, whose
    sepconv.losses follows: binary crossentropy of clipped probabilities (not a sigmoid's
    logits) is ``log(p)`` in Keras 3, ``log(p + 1e-7)`` in tf-keras (3e-7 apart at
    ordinary probabilities, 2e-2 at the clipped edges)."""
    name, kwargs, true_kind, pred_kind, _, _ = case
    return (name == "BinaryCrossentropy" and not kwargs.get("from_logits")
            and (not pred_kind.startswith("sigmoid") or true_kind == "binary_flat"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_losses_equal(keras3_tf, dtype):
    """Keras 3's losses agree with tf-keras' formulas (sepconv's) on this backend but for
    :func:`_keras3_formula`; its torch backend agrees with it to float32 rounding."""
    rng = np.random.default_rng(0)  # (the child's inputs: the same seed)
    reference = [(test_losses._arrays(case, rng), per_dtype)
                 for case, per_dtype in zip(test_losses.CASES, keras3_tf["losses"])]
    failures = test_losses._failures(reference, dtype, skip=_keras3_formula)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("fmt", [".h5", ".keras"])
def test_training_from_the_file_follows_fit(keras3_tf, fmt, torch_single_thread):
    """The file's backend read (an .h5's attribute, a .keras optimizer's module): the
    optimizer resumes with ``flavour="keras3_tf"``, 3 steps equal to ``fit``'s."""
    failures = test_keras_training._failures(keras3_tf["fitted"], "keras3_tf", fmt)
    assert not failures, "\n".join(failures)
