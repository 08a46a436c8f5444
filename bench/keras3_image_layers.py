"""Keras 3's image preprocessing layers in training: sepconv vs Keras 3.15 (torch
backend), 8 images of 64 x 64 x 3 (float32, values in [0, 255)).

    PYTHONPATH=src python bench/keras3_image_layers.py [--repeats 15]

One thread for both (``torch.set_num_threads(1)``); CPU time (``time.process_time``);
the two implementations alternate call by call in one process; the medians are printed
(milliseconds).  Each draws its own random transformation per call, so the work differs
call by call (RandAugment: Keras computes all eleven of its augmentations at every step
and keeps the chosen one; sepconv computes the chosen one).  No assertion: numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "torch"

CASES = [("RandomHue", dict(factor=0.5)), ("Equalization", {}),
         ("ContrastLimitedAdaptiveHistogramEqualization", {}),
         ("RandAugment", dict(num_ops=2)), ("AugMix", {})]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import keras
    import numpy as np
    import torch
    from sepconv.interop.models import build_layer
    torch.set_num_threads(1)
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3))
                         .astype(np.float32))
    for name, kwargs in CASES:
        theirs = getattr(keras.layers, name)(**kwargs)
        ours = build_layer(keras.saving.serialize_keras_object(theirs), "keras3").train()
        theirs(x, training=True), ours(x)  # warm-up
        a, b = [], []
        for _ in range(args.repeats):
            t0 = time.process_time()
            theirs(x, training=True)
            a.append(time.process_time() - t0)
            t0 = time.process_time()
            ours(x)
            b.append(time.process_time() - t0)
        ka, sb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(f"{name}: Keras 3 {ka:.1f} ms, sepconv {sb:.1f} ms, ratio {sb / ka:.2f}")


if __name__ == "__main__":
    main()
