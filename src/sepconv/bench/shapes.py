"""The benchmark suite: separable 1D convolutions as published models use them.

Sizes are the models' own (channels, kernel, sequence length after their subsampling);
batch sizes are what fits a 2-core CPU run of a few minutes, noted per shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List

from .. import padding as _padding


@dataclass(frozen=True)
class Shape:
    name: str
    source: str
    batch: int
    steps: int
    channels: int
    filters: int
    kernel_size: int
    strides: int = 1
    dilation_rate: int = 1
    depth_multiplier: int = 1
    padding: str = "same"
    large: bool = False   # big enough that the roofline is a fair yardstick
    quick: bool = False   # part of ``--quick``

    @property
    def out_steps(self) -> int:
        return _padding.conv_output_length(self.steps, self.kernel_size, self.strides,
                                           self.dilation_rate, self.padding)

    def flops(self, backward: bool) -> float:
        """Multiply-adds x 2 of the depthwise and pointwise parts (backward: 2x forward)."""
        cm = self.channels * self.depth_multiplier
        rows = self.batch * self.out_steps
        fwd = 2.0 * rows * cm * (self.kernel_size + self.filters)
        return fwd * (3 if backward else 1)

    def bytes(self, backward: bool) -> float:
        """Compulsory float32 traffic: read x and the weights, write y; the backward pass
        also reads x and dy, writes dx and the weight gradients."""
        cm = self.channels * self.depth_multiplier
        x = self.batch * self.steps * self.channels
        y = self.batch * self.out_steps * self.filters
        w = self.kernel_size * cm + cm * self.filters + self.filters
        words = x + y + w
        if backward:
            words += 2 * x + y + 2 * w
        return 4.0 * words

    def as_dict(self) -> Dict:
        d = asdict(self)
        d["out_steps"] = self.out_steps
        return d


SHAPES: List[Shape] = [
    Shape("quartznet_b1", "QuartzNet 15x5 block 1 (256 ch, k33), 8 s of audio after 2x",
          batch=4, steps=400, channels=256, filters=256, kernel_size=33, large=True,
          quick=True),
    Shape("quartznet_b5", "QuartzNet 15x5 block 5 (512 ch, k75)",
          batch=4, steps=400, channels=512, filters=512, kernel_size=75, large=True),
    Shape("quartznet_c2_dilated", "QuartzNet epilogue C2 (k87, dilation 2), 512 ch",
          batch=4, steps=400, channels=512, filters=512, kernel_size=87, dilation_rate=2,
          large=True),
    Shape("citrinet_block", "Citrinet-384 block (k25) at 8x time reduction",
          batch=8, steps=200, channels=384, filters=384, kernel_size=25, large=True),
    Shape("matchboxnet_kws", "MatchboxNet 3x1x64 keyword spotting, 1 s at 10 ms",
          batch=64, steps=101, channels=64, filters=64, kernel_size=13, quick=True),
    Shape("conformer_conv", "Conformer-M convolution module (256 ch, k31), 10 s after 4x",
          batch=8, steps=250, channels=256, filters=256, kernel_size=31, large=True,
          quick=True),
    Shape("causal_stream_128", "causal streaming block (k4), 128 ch",
          batch=32, steps=200, channels=128, filters=128, kernel_size=4, padding="causal"),
    Shape("causal_stream_1536", "causal streaming block (k4), 1536 ch (Mamba-sized)",
          batch=4, steps=256, channels=1536, filters=1536, kernel_size=4, padding="causal",
          large=True, quick=True),
    Shape("timeseries_cls", "time-series classifier (64 -> 128 ch, k9, 512 steps)",
          batch=32, steps=512, channels=64, filters=128, kernel_size=9),
    Shape("multiplier_2", "depth_multiplier 2 (128 ch, k9)",
          batch=16, steps=256, channels=128, filters=128, kernel_size=9, depth_multiplier=2),
    Shape("strided_2", "strided subsampling block (256 ch, k11, stride 2)",
          batch=8, steps=800, channels=256, filters=256, kernel_size=11, strides=2,
          large=True),
    Shape("tcn_dilated_causal", "TCN / WaveNet-style causal block (k3, dilation 8), 128 ch",
          batch=16, steps=1000, channels=128, filters=128, kernel_size=3, dilation_rate=8,
          padding="causal"),
]
