"""Suite time: what the model-file fixtures spent in Keras' ``predict`` against the
inference-mode call that replaced it (tests/keras_files.call_outputs), CPU seconds
(process_time, all threads), old and new alternated per case in one process.

- tests/test_fuzz_model_files.py: old = tf-keras builds the model once per format (.h5,
  .keras) and predicts each, Keras 3 predicts; new = tf-keras builds once, both call.
  ``N``: every len(NAMES) // N-th class.
- tests/test_ported_models.py: tf-keras ``predict`` against the call (the fixture now
  reuses its GradientTape's forward, so the predict is the saving), with the largest
  difference between the two.

Run from the repository root: ``PYTHONPATH=src python bench/suite_predict_ab.py 8``
(saves, fits and the TF-free child are the same in both and are left out).
"""
import sys
import time

sys.path.insert(0, "tests")
import conftest  # noqa: F401,E402  (import order: triton and keras before TensorFlow)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402
from keras_files import call_outputs, outputs  # noqa: E402
import test_fuzz_model_files as F  # noqa: E402
import test_ported_models as P  # noqa: E402

def cpu(fn):
    t = time.process_time()
    r = fn()
    return time.process_time() - t, r

tot = {"fuzz_old": 0.0, "fuzz_new": 0.0, "ported_predict": 0.0, "ported_call": 0.0}
names = F.NAMES[:: max(1, len(F.NAMES) // int(sys.argv[1] if len(sys.argv) > 1 else 8))]
for i, name in enumerate(names):
    # old: tf-keras builds the model once per format and predicts each; new: once, call
    def old():
        for _ in range(2):
            made = F._model(tf_keras, name, seed=i)
            if made: outputs(made[0].predict(made[1], verbose=0))
        made = None if name in F.ABSENT else F._model(keras, name, seed=i)
        if made: outputs(made[0].predict(made[1], verbose=0))
    def new():
        made = F._model(tf_keras, name, seed=i)
        if made: call_outputs(*made)
        made = None if name in F.ABSENT else F._model(keras, name, seed=i)
        if made: call_outputs(*made)
    for tag, fn in (("old", old), ("new", new)) if i % 2 == 0 else (("new", new), ("old", old)):
        s, _ = cpu(fn); tot["fuzz_" + tag] += s
    print(f"fuzz {name:28s} old+new so far {tot['fuzz_old']:.1f} / {tot['fuzz_new']:.1f}", flush=True)
for name, (build, loss, opt, fmts) in P.MODELS.items():
    model, shapes = build(tf_keras)
    rng = np.random.default_rng(len(name))
    x, y = P._data(name, model, shapes, loss, rng)
    s1, a = cpu(lambda: model.predict(x, verbose=0))
    s2, b = cpu(lambda: np.asarray(model([P.tf.constant(v) for v in x], training=False)))
    tot["ported_predict"] += s1; tot["ported_call"] += s2
    print(f"ported {name:18s} predict {s1:.2f}  call {s2:.2f}  max diff {np.abs(a - b).max():.1e}", flush=True)
print("TOTAL", {k: round(v, 1) for k, v in tot.items()})
