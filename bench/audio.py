"""Audio front ends forward: sepconv vs Keras 3.15 (torch backend), one second of 16 kHz
audio, batch 32.

    PYTHONPATH=src python bench/audio.py [--batch 32] [--samples 16000] [--repeats 9]

Alternates the two implementations call by call in one process (after a warm-up) and
prints the median time of each (milliseconds) and the ratio sepconv / Keras 3, for
``MelSpectrogram`` (defaults: fft 2048, stride 512, 128 mel bins; and a speech setting:
fft 512, window 400, stride 160, 80 bins) and ``STFTSpectrogram`` (log, frame 400, step
160, fft 512, valid and same).  Both run on torch with the same thread count (2).  No
assertion: numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "torch"

CASES = [
    ("MelSpectrogram", "defaults", dict()),
    ("MelSpectrogram", "speech 25ms/10ms, 80 bins",
     dict(fft_length=512, sequence_length=400, sequence_stride=160, num_mel_bins=80)),
    ("STFTSpectrogram", "log 400/160/512 valid",
     dict(mode="log", frame_length=400, frame_step=160, fft_length=512)),
    ("STFTSpectrogram", "magnitude 256/128 same",
     dict(mode="magnitude", frame_length=256, frame_step=128, padding="same")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the medians here")
    args = parser.parse_args()

    import keras
    import numpy as np
    import torch

    import sepconv

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((args.batch, args.samples)).astype(np.float32)
    print(f"torch {torch.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
          f"{args.threads} threads; input {args.batch} x {args.samples} samples float32")
    print(f"{'layer':16s} {'setting':28s} {'sepconv ms':>11s} {'keras3 ms':>10s} "
          f"{'ratio':>6s}")
    rows = []
    for cls, label, kw in CASES:
        x = torch.from_numpy(signal if cls == "MelSpectrogram" else signal[..., None])
        ours = getattr(sepconv, cls)(**kw)
        theirs = getattr(keras.layers, cls)(**kw)
        theirs(x)  # build
        if ours.get_weights():
            ours.set_weights([keras.ops.convert_to_numpy(w) for w in theirs.weights])
        with torch.no_grad():
            np.testing.assert_allclose(ours(x).numpy(), keras.ops.convert_to_numpy(theirs(x)),
                                       rtol=1e-4, atol=1e-3)
            times = {"ours": [], "theirs": []}
            for _ in range(2):  # warm-up
                ours(x)
                theirs(x)
            for _ in range(args.repeats):
                for key, layer in (("ours", ours), ("theirs", theirs)):
                    start = time.perf_counter()
                    layer(x)
                    times[key].append((time.perf_counter() - start) * 1e3)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"{cls:16s} {label:28s} {a:11.2f} {b:10.2f} {a / b:6.2f}")
        rows.append(dict(layer=cls, setting=label, sepconv_ms=a, keras3_ms=b, ratio=a / b))
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(dict(batch=args.batch, samples=args.samples, threads=args.threads,
                           repeats=args.repeats, torch=torch.__version__,
                           keras=keras.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
