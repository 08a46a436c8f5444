"""``python -m sepconv train`` and ``python -m sepconv evaluate``: the main job.

``train`` fits a small network of ``SeparableConv1D`` blocks, composed R-style with
``layer_separable_conv_1d`` into a ``torch.nn.Sequential``, on a real UCR/UEA data set that
ships inside an installed wheel (see :mod:`sepconv.datasets`; nothing is downloaded). It
prints the test accuracy beside published accuracies of well-known deep models on the
same train/test split, and writes to ``--out`` (default ``runs/<dataset>``):

- ``model.pt``: state_dict, the layers' configs, data set name, classes, normalisation;
  ``python -m sepconv evaluate --model runs/<dataset>/model.pt`` reloads it and
  reproduces the test accuracy;
- ``curves.png``: loss and accuracy per epoch; ``history.json``; ``results.json``;
- ``checkpoint.pt``: the whole training state after every epoch (model, optimizer,
  scheduler, history, every process's torch/CUDA/numpy/Python random state; the data
  order is ``DistributedSampler``'s, a function of seed and epoch). SIGINT/SIGTERM finish
  the current step, checkpoint mid-epoch and exit 128 + signal with the command that
  continues; ``--resume`` continues, bitwise as if never stopped on CPU. Files in
  ``--out`` are replaced atomically (:func:`atomic_write`), the checkpoint carries its
  sha256, and a resume that cannot continue (other data set, model, processes, a
  corrupted file) ends with one line before anything is written.

Needs the ``train`` extra (sktime for the data files, tqdm, matplotlib); without it the
command says ``pip install "sepconv[train]"`` in one line.

The default model adds an L2 penalty on its kernels to the loss
(``sepconv.regularization_loss``) and constrains each pointwise filter to a max norm,
which holds after every optimizer step.

Data-parallel: under ``torchrun --nproc-per-node N -m sepconv train`` every process
trains on its shard of each epoch (``DistributedSampler``), gradients are averaged by
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), constraints are applied on every
rank after its step, and only rank 0 prints and writes. ``--batch-size`` is the global
batch: each of N processes takes ``ceil(batch_size / N)`` cases per step.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import math
import os
import random
import shlex
import signal
import sys
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets

PROG = "python -m sepconv"
MODEL_FORMAT = "sepconv.train/model"
MODEL_FORMAT_VERSION = 1
OUTPUT_FILES = ("model.pt", "history.json", "results.json", "curves.png")
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "sepconv.train/checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
#: The one line printed when the main job's packages are missing.
TRAIN_EXTRA = 'pip install "sepconv[train]"'
#: Options that define a run: a checkpoint is resumed with exactly these.
RUN_SETTINGS = ("dataset", "epochs", "batch_size", "lr", "seed", "filters", "kernel_size",
                "depth_multiplier", "padding", "dropout", "l2", "max_norm")

# ---------------------------------------------------------------------------------------
# Published accuracies on the same fixed train/test splits (percent).

SOURCES = {
    "review": (
        "H. Ismail Fawaz, G. Forestier, J. Weber, L. Idoumghar, P.-A. Muller. Deep learning "
        "for time series classification: a review. Data Mining and Knowledge Discovery "
        "33(4):917-963, 2019. doi:10.1007/s10618-019-00619-1. Accuracy averaged over 10 "
        "runs, UCR/UEA archive (85 univariate sets) results table; the same table is in the "
        "README of github.com/hfawaz/dl-4-tsc."
    ),
    "review-mts": (
        "Ismail Fawaz et al. 2019 (as above), results table for the MTS archive (Baydogan), "
        "accuracy averaged over 10 runs. Same 270/370 split of JapaneseVowels; the review "
        "resampled series to the longest length, sepconv zero-pads them."
    ),
    "inceptiontime": (
        "H. Ismail Fawaz, B. Lucas, G. Forestier, C. Pelletier, D. F. Schmidt, J. Weber, "
        "G. I. Webb, L. Idoumghar, P.-A. Muller, F. Petitjean. InceptionTime: finding "
        "AlexNet for time series classification. Data Mining and Knowledge Discovery "
        "34(6):1936-1962, 2020 (arXiv:1909.04939). Ensemble of 5 Inception networks on the "
        "UCR 2018 archive, per-data-set accuracy from the authors' results file "
        "results-InceptionTime-128.csv (github.com/hfawaz/InceptionTime)."
    ),
}

PUBLISHED: Dict[str, List[Tuple[str, float, str]]] = {
    "GunPoint": [("FCN", 100.0, "review"), ("ResNet", 99.1, "review"),
                 ("InceptionTime", 100.0, "inceptiontime")],
    "ItalyPowerDemand": [("FCN", 96.1, "review"), ("ResNet", 96.3, "review"),
                         ("InceptionTime", 96.5, "inceptiontime")],
    "ArrowHead": [("FCN", 84.3, "review"), ("ResNet", 84.5, "review"),
                  ("InceptionTime", 84.6, "inceptiontime")],
    "OSULeaf": [("FCN", 97.7, "review"), ("ResNet", 97.9, "review"),
                ("InceptionTime", 94.2, "inceptiontime")],
    "ACSF1": [("InceptionTime", 92.0, "inceptiontime")],
    "PLAID": [("InceptionTime", 94.4, "inceptiontime")],
    "JapaneseVowels": [("FCN", 99.3, "review-mts"), ("ResNet", 99.2, "review-mts")],
    "BasicMotions": [],  # not in either paper's tables; no figure quoted
}


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


# ---------------------------------------------------------------------------------------
# The model.


class BatchNormalization(torch.nn.Module):
    """Keras' ``BatchNormalization`` over the last axis of ``(batch, steps, channels)``.

    Statistics over batch and steps per channel, as ``torch.nn.BatchNorm1d`` on the
    transposed input; torch's momentum convention (0.1 = Keras' 0.9).
    """

    def __init__(self, units: int, momentum: float = 0.1, epsilon: float = 1e-3):
        super().__init__()
        self.units, self.momentum, self.epsilon = units, momentum, epsilon
        self.bn = torch.nn.BatchNorm1d(units, eps=epsilon, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class GlobalAveragePooling1D(torch.nn.Module):
    """Keras' ``GlobalAveragePooling1D``: ``(batch, steps, channels)`` -> ``(batch, channels)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def build_model(n_channels: int, n_classes: int, filters: Sequence[int],
                kernel_sizes: Sequence[int], depth_multiplier: int = 1,
                padding: str = "same", dropout: float = 0.0, l2: float = 0.0,
                max_norm: float = 0.0) -> torch.nn.Sequential:
    """Blocks of ``SeparableConv1D`` -> batch normalisation -> ReLU (the FCN recipe of
    Wang et al. 2017 with separable convolutions), global average pooling, dropout and a
    linear classifier.

    Composed as an R user would: ``model <- keras_model_sequential() %>%
    layer_separable_conv_1d(filters, kernel_size, input_shape = c(NA, channels), ...) %>%
    layer_batch_normalization() %>% layer_activation("relu") %>% ...``.
    Input ``(batch, steps, n_channels)``; output logits ``(batch, n_classes)``.
    """
    import sepconv

    regularizer = {"class_name": "L2", "config": {"l2": float(l2)}} if l2 > 0 else None
    constraint = ({"class_name": "MaxNorm", "config": {"max_value": float(max_norm),
                                                        "axis": [0, 1]}}
                  if max_norm > 0 else None)
    model = torch.nn.Sequential()
    for i, (f, k) in enumerate(zip(filters, kernel_sizes)):
        extra = {"input_shape": (None, n_channels)} if i == 0 else {}
        sepconv.layer_separable_conv_1d(
            model, filters=f, kernel_size=k, padding=padding,
            depth_multiplier=depth_multiplier,
            depthwise_regularizer=regularizer, pointwise_regularizer=regularizer,
            pointwise_constraint=constraint, **extra)
        model.append(BatchNormalization(f))
        model.append(torch.nn.ReLU())
    model.append(GlobalAveragePooling1D())
    if dropout > 0:
        model.append(torch.nn.Dropout(dropout))
    model.append(torch.nn.Linear(filters[-1], n_classes))
    return model


def architecture(model: torch.nn.Sequential) -> List[Dict[str, Any]]:
    """JSON-ready description of every layer: Keras configs for the sepconv layers."""
    import sepconv

    out = []
    for m in model:
        if isinstance(m, sepconv.SeparableConv1D):
            out.append({"class_name": "SeparableConv1D", "config": m.get_config()})
        elif isinstance(m, BatchNormalization):
            out.append({"class_name": "BatchNormalization", "config": {
                "units": m.units, "momentum": m.momentum, "epsilon": m.epsilon}})
        elif isinstance(m, torch.nn.ReLU):
            out.append({"class_name": "ReLU", "config": {}})
        elif isinstance(m, GlobalAveragePooling1D):
            out.append({"class_name": "GlobalAveragePooling1D", "config": {}})
        elif isinstance(m, torch.nn.Dropout):
            out.append({"class_name": "Dropout", "config": {"rate": m.p}})
        elif isinstance(m, torch.nn.Linear):
            out.append({"class_name": "Linear", "config": {
                "in_features": m.in_features, "out_features": m.out_features}})
        else:  # pragma: no cover - build_model makes only the above
            raise TypeError(f"cannot serialise layer {type(m).__name__}")
    return json.loads(json.dumps(out))


def from_architecture(arch: List[Dict[str, Any]]) -> torch.nn.Sequential:
    import sepconv

    builders = {
        "SeparableConv1D": sepconv.SeparableConv1D.from_config,
        "BatchNormalization": lambda c: BatchNormalization(**c),
        "ReLU": lambda c: torch.nn.ReLU(),
        "GlobalAveragePooling1D": lambda c: GlobalAveragePooling1D(),
        "Dropout": lambda c: torch.nn.Dropout(c["rate"]),
        "Linear": lambda c: torch.nn.Linear(c["in_features"], c["out_features"]),
    }
    model = torch.nn.Sequential()
    for entry in arch:
        if entry.get("class_name") not in builders:
            raise ValueError(f"unknown layer {entry.get('class_name')!r}")
        model.append(builders[entry["class_name"]](entry["config"]))
    return model


def check_lengths(model: torch.nn.Sequential, steps: int) -> None:
    """Fail early, with the layer and the arithmetic, if a block leaves no steps."""
    import sepconv

    shape: Tuple[Optional[int], ...] = (None, steps, None)
    blocks = [m for m in model if isinstance(m, sepconv.SeparableConv1D)]
    for i, m in enumerate(blocks):
        try:
            shape = m.compute_output_shape((None, shape[1], shape[2] or 1))
        except ValueError as exc:
            raise UsageError(f"block {i + 1} cannot take series of {shape[1]} steps: {exc}")
        if shape[1] is not None and shape[1] < 1:
            raise UsageError(
                f"series of {steps} steps are too short for the kernel sizes with "
                f"padding={m.padding!r}: block {i + 1} would output {shape[1]} steps "
                f"(use --padding same or smaller --kernel-size)")


# ---------------------------------------------------------------------------------------
# Command line.


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}")
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value
    return parse


def _float_in(name: str, low: float, high: float, low_open: bool = False,
              high_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}")
        ok = (value > low if low_open else value >= low) and \
             (value < high if high_open else value <= high)
        if not ok or math.isnan(value):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise argparse.ArgumentTypeError(
                f"{name} must be in {lo}{low}, {high}{hi}, got {text}")
        return value
    return parse


def _dataset_name(text: str) -> str:
    try:
        return datasets._resolve_name(text)
    except datasets.DatasetError as exc:
        raise argparse.ArgumentTypeError(str(exc))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump on every rank
        if _rank_from_env() == 0:
            print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def train_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} train", description=(
        "Train a SeparableConv1D network on a UCR/UEA data set bundled with an installed "
        "package (no download), print test accuracy beside published results, save the "
        "model and curves. Data sets: " + ", ".join(datasets.known()) + "."))
    p.add_argument("--dataset", type=_dataset_name, default="GunPoint",
                   help="bundled data set (default: GunPoint)")
    p.add_argument("--epochs", type=_positive_int("--epochs"), default=500)
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=16,
                   help="global batch size, split across processes (default: 16)")
    p.add_argument("--lr", type=_float_in("--lr", 0.0, 10.0, low_open=True), default=3e-3,
                   help="Adam learning rate, cosine-annealed to 0 (default: 3e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int("--threads"), default=1,
                   help="CPU threads per process (default: 1; this small network gains "
                        "little from more, and oversubscribed cores slow it down)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:N or auto (default: cpu); under torchrun cuda means "
                        "cuda:LOCAL_RANK")
    p.add_argument("--filters", type=_positive_int("--filters"), nargs="+",
                   default=[32, 64, 32], help="filters of each SeparableConv1D block "
                   "(one block per value; default: 32 64 32)")
    p.add_argument("--kernel-size", type=_positive_int("--kernel-size"), nargs="+",
                   default=[8, 5, 3], help="kernel size of each block, or one for all "
                   "(default: 8 5 3)")
    p.add_argument("--depth-multiplier", type=_positive_int("--depth-multiplier"), default=2)
    p.add_argument("--padding", type=str.lower, choices=["valid", "same", "causal"],
                   default="same")
    p.add_argument("--dropout", type=_float_in("--dropout", 0.0, 1.0, high_open=True),
                   default=0.2, help="dropout before the classifier (default: 0.2)")
    p.add_argument("--l2", type=_float_in("--l2", 0.0, 1.0), default=1e-4,
                   help="L2 regularizer on depthwise and pointwise kernels, 0 for none "
                        "(default: 1e-4)")
    p.add_argument("--max-norm", type=_float_in("--max-norm", 0.0, 1e6), default=1.0,
                   help="max-norm constraint on each pointwise filter, 0 for none "
                        "(default: 1)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<dataset>)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh, replacing outputs and checkpoint already in --out "
                        "(refused otherwise)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the run whose {CHECKPOINT_FILE} is in --out (written "
                        "after every epoch and on SIGINT/SIGTERM); its settings are taken "
                        "from the checkpoint, options given that contradict it are refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def evaluate_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} evaluate", description=(
        "Reload a model written by `python -m sepconv train` and report its accuracy on "
        "its data set's test split."))
    p.add_argument("--model", required=True,
                   help="model.pt written by train (or the folder holding it)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=256)
    return p


# ---------------------------------------------------------------------------------------
# Distributed plumbing.


def _rank_from_env() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class Dist:
    """World size, rank and device; a process group when launched by torchrun."""

    def __init__(self, device_arg: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device_arg, self.local_rank if self.world > 1 else None)
        self.group = False
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend)
            self.group = True
            self.backend = backend

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: List[float]) -> List[float]:
        if not self.group:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def largest(self, value: int) -> int:
        """The largest ``value`` over ranks (every rank gets it): ranks agree to stop."""
        if not self.group:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Every rank's ``obj`` in rank order on rank 0 (None on the others)."""
        if not self.group:
            return [obj]
        import torch.distributed as dist

        out: Optional[List[Any]] = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.group = False


def resolve_device(text: str, local_rank: Optional[int] = None) -> torch.device:
    text = str(text).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {text!r}")
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {text!r}")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available on this machine "
                         "(use --device cpu)")
    index = device.index if device.index is not None else (local_rank or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def adam(params, lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr)``, its fused form where this torch has one for the
    parameters' device (CPU since torch 2.4, CUDA): the same update in one kernel over all
    the tensors instead of ~10 ops per tensor: 0.19 ms instead of 0.81 ms of CPU time a
    step for the main job's 17 tensors (one thread, 2-core AMD EPYC Zen 4, torch 2.13),
    the same updates to float32 rounding.  Checkpoints load into either form."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without it
        return torch.optim.Adam(params, lr=lr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


# ---------------------------------------------------------------------------------------
# Settings and the output folder.


def _expand_kernel_sizes(filters: List[int], kernel_sizes: List[int]) -> List[int]:
    if len(kernel_sizes) == 1:
        return kernel_sizes * len(filters)
    if len(kernel_sizes) != len(filters):
        raise UsageError(f"--kernel-size takes one value or one per block ({len(filters)} "
                         f"blocks from --filters), got {len(kernel_sizes)}")
    return kernel_sizes


def _default_out(args) -> str:
    return args.out or os.path.join("runs", args.dataset)


def _prepare_out(args) -> str:
    out = _default_out(args)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} exists and is not a folder")
    if args.resume or args.overwrite:
        return out
    existing = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(out, f))]
    if existing:
        raise UsageError(f"{out!r} already holds {', '.join(existing)}; pass --overwrite to "
                         "replace them or choose another --out")
    if os.path.exists(os.path.join(out, CHECKPOINT_FILE)):
        raise UsageError(f"{out!r} holds {CHECKPOINT_FILE} of an unfinished run; pass "
                         "--resume to continue it, --overwrite to start afresh, or choose "
                         "another --out")
    return out


# ---------------------------------------------------------------------------------------
# Checkpoints: atomic files, an envelope with a digest, every rank's random state.


def _fault_hook(event: str, count: int) -> None:
    """Test hook for the kill-and-resume tests: ``_SEPCONV_TRAIN_FAULT=SIGNAME:event:N``
    sends SIGNAME to this process at the N-th ``event``: ``step`` (the start of optimizer
    step N of the run, counted from 1 over all epochs; the step then runs on) or ``save``
    (the N-th checkpoint write of this process, once its temporary file is complete and
    synced and before it replaces the checkpoint)."""
    spec = os.environ.get("_SEPCONV_TRAIN_FAULT")
    if spec:
        name, kind, n = spec.split(":")
        if kind == event and int(n) == count:
            os.kill(os.getpid(), getattr(signal, name))


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None],
                 before_replace: Optional[Callable[[], None]] = None) -> None:
    """Replace ``path`` by what ``write(file)`` writes, atomically.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced,
    then renamed over ``path`` (``os.replace``) and the folder fsynced: a kill or a power
    cut at any moment leaves either the old file or the complete new one. A temporary
    left behind by a kill is named ``.<name>.<pid>.<random>.tmp``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                               f"{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _remove_stale_temporaries(out: str) -> None:
    """Temporaries of writes that a kill cut short (see :func:`atomic_write`)."""
    prefixes = tuple(f".{name}." for name in OUTPUT_FILES + (CHECKPOINT_FILE,))
    for name in os.listdir(out):
        if name.startswith(prefixes) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out, name))
            except OSError:
                pass


_checkpoint_writes = 0


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, inside an envelope holding its sha256.

    The file is a ``torch.save`` of ``{"format", "format_version", "sha256", "payload"}``,
    ``payload`` the bytes of ``torch.save(state)`` as a uint8 tensor: torch.load does not
    check its data, the digest does (see :func:`read_checkpoint`).
    """
    global _checkpoint_writes
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    envelope = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    buf = io.BytesIO()
    torch.save(envelope, buf)
    blob = buf.getvalue()  # serialised first: the file then takes one write
    _checkpoint_writes += 1
    count = _checkpoint_writes
    atomic_write(path, lambda f: f.write(blob),
                 before_replace=lambda: _fault_hook("save", count))


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The state saved by :func:`save_checkpoint`; UsageError (one line) if the file is
    missing, not a sepconv checkpoint, or corrupted."""
    fix = "nothing in --out was changed; start afresh with --overwrite or choose another --out"
    if not os.path.isfile(path):
        raise UsageError(f"--resume: no checkpoint to continue from ({path} does not exist); "
                         "run without --resume to start")
    try:
        envelope = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"--resume: {path} is corrupted or not a sepconv checkpoint "
                         f"(torch.load failed with {type(exc).__name__}); {fix}")
    if not isinstance(envelope, dict) or envelope.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"--resume: {path} is not a checkpoint of `{PROG} train`; {fix}")
    if envelope.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise UsageError(f"--resume: {path} was written by a newer sepconv; upgrade sepconv")
    payload = envelope.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise UsageError(f"--resume: {path} is corrupted (no payload); {fix}")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != envelope.get("sha256"):
        raise UsageError(f"--resume: {path} is corrupted (its contents do not match their "
                         f"sha256); {fix}")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        for key in ("settings", "data", "architecture", "model", "optimizer", "scheduler",
                    "epoch", "step", "ranks", "history", "world_size"):
            state[key]
    except Exception as exc:
        raise UsageError(f"--resume: {path} is corrupted ({type(exc).__name__} reading its "
                         f"payload); {fix}")
    return state


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def adopt_settings(args, state: Dict[str, Any], explicit: Sequence[str], path: str) -> None:
    """Take the run's settings from its checkpoint; refuse options that contradict it."""
    saved = state["settings"]
    filters = args.filters if "filters" in explicit else saved["filters"]
    for key in RUN_SETTINGS:
        if key not in explicit:
            continue
        mine = getattr(args, key)
        if key == "kernel_size":
            mine = _expand_kernel_sizes(list(filters), list(mine))
        if mine != saved[key]:
            raise UsageError(
                f"--resume: {path} is a run with {_option(key)} {_show(saved[key])}, this "
                f"command asks for {_option(key)} {_show(mine)}; drop {_option(key)} (the "
                "checkpoint's settings are used) or choose another --out")
    for key in RUN_SETTINGS:
        setattr(args, key, saved[key])


def _unnamed(arch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """An architecture without layer names (auto-numbered per process)."""
    return [{**e, "config": {k: v for k, v in e["config"].items() if k != "name"}}
            for e in arch]


def _rng_state(device: torch.device) -> Dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                      int(has_gauss), float(cached)],
            "python": random.getstate()}


def _set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _data_fingerprint(split: "datasets.Split") -> str:
    h = hashlib.sha256()
    for a in (split.x_train, split.y_train, split.x_test, split.y_test):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(list(split.classes)).encode())
    return h.hexdigest()


class StopSignals:
    """SIGINT / SIGTERM ask the run to stop after the current step; the request is seen
    by :attr:`signum`. A repeat is the same request (torchrun forwards the terminal's
    Ctrl-C to workers that got it already); a third signal ends the process at once."""

    def __init__(self):
        self.signum = 0
        self.count = 0
        self._old: Dict[int, Any] = {}

    def install(self) -> "StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self.signum = self.signum or signum
        if self.count >= 3:
            self.restore()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old.clear()


def resume_command(argv: Sequence[str], out: str, world: int) -> str:
    """The command that continues this run."""
    keep = [a for a in argv if a not in ("--overwrite", "--resume")]
    if "--out" not in keep and not any(a.startswith("--out=") for a in keep):
        keep += ["--out", out]
    launcher = (f"torchrun --standalone --nproc-per-node {world} -m sepconv" if world > 1
                else PROG)
    return " ".join([launcher, "train", *map(shlex.quote, keep), "--resume"])


# ---------------------------------------------------------------------------------------
# Training.


@torch.no_grad()
def accuracy_and_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      device: torch.device, batch: int = 512) -> Tuple[float, float, int]:
    """Sums over ``x``: (cross-entropy, correct, cases), in eval mode."""
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
        logits = model(xb)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += float((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss, correct, len(x)


def _constraint_report(model: torch.nn.Module, max_norm: float) -> Optional[float]:
    """Largest pointwise-filter norm (what the max-norm constraint bounds)."""
    import sepconv

    norms = [m.pointwise_kernel.detach().reshape(-1, m.filters).norm(dim=0).max().item()
             for m in model.modules() if isinstance(m, sepconv.SeparableConv1D)]
    return max(norms) if norms and max_norm > 0 else None


def _replicas_max_difference(model: torch.nn.Module, dist_: Dist) -> float:
    """Largest |parameter difference| between this rank and rank 0 (0 when in sync)."""
    if not dist_.group:
        return 0.0
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(dist_.device)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = torch.tensor([(flat - ref).abs().max().item()], device=dist_.device)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def run_train(args, explicit: Sequence[str] = (), argv: Sequence[str] = ()) -> int:
    """``train``: fresh, or ``--resume`` from ``--out``/checkpoint.pt. Every check that can
    refuse the run happens before anything in ``--out`` is written."""
    from torch.utils.data.distributed import DistributedSampler

    import sepconv

    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite starts it "
                         "afresh: pass one of them")
    state = None
    out = _prepare_out(args)
    ckpt_path = os.path.join(out, CHECKPOINT_FILE)
    if args.resume:
        state = read_checkpoint(ckpt_path)  # every rank reads it
        adopt_settings(args, state, explicit, ckpt_path)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if state["world_size"] != world:
            raise UsageError(
                f"--resume: {ckpt_path} was written by {state['world_size']} process(es), "
                f"this run has {world}; resume with the same number of processes")
        if state["epoch"] == args.epochs and state["step"] == 0 and all(
                os.path.exists(os.path.join(out, f)) for f in OUTPUT_FILES):
            if _rank_from_env() == 0:
                print(f"sepconv train: the run in {out!r} finished its {args.epochs} epochs "
                      f"already; its model is {os.path.join(out, 'model.pt')}")
            return 0
    kernel_sizes = args.kernel_size = _expand_kernel_sizes(args.filters, args.kernel_size)
    stop = StopSignals().install()
    try:
        dist_ = Dist(args.device)
        try:
            return _train(args, kernel_sizes, out, dist_, sepconv, DistributedSampler,
                          state, stop, list(argv))
        finally:
            dist_.close()
    finally:
        stop.restore()


def _train(args, kernel_sizes, out, dist_, sepconv, DistributedSampler, state, stop,
           argv) -> int:
    t0 = time.time()
    ckpt_path = os.path.join(out, CHECKPOINT_FILE)
    split = datasets.load(args.dataset)
    data_id = _data_fingerprint(split)
    if state is not None and state["data"].get("sha256") != data_id:
        raise UsageError(f"--resume: {ckpt_path} was trained on other data than the "
                         f"installed {split.name} (its data fingerprint differs); nothing "
                         "in --out was changed")
    norm = datasets.Normalizer.fit(split.x_train, split.lengths_train)
    x_train = torch.from_numpy(norm(split.x_train, split.lengths_train))
    y_train = torch.from_numpy(split.y_train)
    x_test = torch.from_numpy(norm(split.x_test, split.lengths_test))
    y_test = torch.from_numpy(split.y_test)

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    model = build_model(split.n_channels, split.n_classes, args.filters, kernel_sizes,
                        args.depth_multiplier, args.padding, args.dropout, args.l2,
                        args.max_norm)
    check_lengths(model, x_train.shape[1])
    with torch.no_grad():
        model.eval()
        model(x_train[:1])  # create the weights of the blocks after the first
        model.train()
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = adam(model.parameters(), args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    model.to(dist_.device)
    if state is not None:
        if _unnamed(state["architecture"]) != _unnamed(architecture(model)):
            raise UsageError(f"--resume: {ckpt_path} describes another model than its "
                             "settings build; nothing in --out was changed")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["scheduler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--resume: {ckpt_path} does not fit the model of its settings "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "nothing in --out was changed")

    net: torch.nn.Module = model
    if dist_.group:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[dist_.device.index] if dist_.device.type == "cuda" else None)
    # The data order: DistributedSampler draws each epoch's permutation from a generator
    # seeded with seed + epoch, so (seed, epoch) is its whole state; a checkpoint taken
    # mid-epoch also keeps the epoch's order itself.
    sampler = DistributedSampler(range(len(x_train)), num_replicas=dist_.world,
                                 rank=dist_.rank, shuffle=True, seed=args.seed)
    per_rank = math.ceil(args.batch_size / dist_.world)
    steps_per_epoch = math.ceil(sampler.num_samples / per_rank)
    torch.manual_seed(args.seed + 1 + dist_.rank)  # dropout stream of this rank
    # Test cases this rank scores; sums are reduced over ranks.
    test_idx = torch.arange(dist_.rank, len(x_test), dist_.world)

    history: List[Dict[str, float]] = []
    start_epoch = start_step = 0
    seconds_before = 0.0
    mine: Dict[str, Any] = {}
    if state is not None:
        history = [dict(h) for h in state["history"]]
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        seconds_before = float(state.get("seconds", 0.0))
        mine = state["ranks"][dist_.rank]
        _set_rng_state(mine["rng"], dist_.device)

    if dist_.main:
        os.makedirs(out, exist_ok=True)
        _remove_stale_temporaries(out)
        if args.overwrite and os.path.exists(ckpt_path):
            os.unlink(ckpt_path)  # an old run's checkpoint must not be resumed later
        print(f"sepconv train: {split.name} ({split.n_classes} classes, "
              f"{len(x_train)} train / {len(x_test)} test, {x_train.shape[1]} steps x "
              f"{split.n_channels} channels; data from {split.source})")
        print(f"model: {len(args.filters)} SeparableConv1D blocks (filters "
              f"{args.filters}, kernel sizes {kernel_sizes}, depth_multiplier "
              f"{args.depth_multiplier}, padding {args.padding!r}), {n_params} parameters; "
              f"L2 {args.l2} on kernels, max-norm {args.max_norm} on pointwise filters")
        if dist_.group:
            print(f"data-parallel: {dist_.world} processes ({dist_.backend}), "
                  f"{per_rank} cases per process per step")
        if state is not None:
            where = (f"epoch {start_epoch + 1}, step {start_step + 1} of {steps_per_epoch}"
                     if start_step else f"the end of epoch {start_epoch}")
            print(f"resumed from {ckpt_path} at {where}")
        sys.stdout.flush()

    def save(epochs_done: int, step: int, sums: Optional[List[float]],
             order: Optional[List[int]]) -> None:
        """Checkpoint the run (rank 0 writes every rank's random state and partial sums)."""
        ranks = dist_.gather({"rng": _rng_state(dist_.device), "partial": sums,
                              "order": order})
        if not dist_.main:
            return
        save_checkpoint(ckpt_path, {
            "settings": {k: getattr(args, k) for k in RUN_SETTINGS},
            "data": {"name": split.name, "classes": list(split.classes),
                     "sha256": data_id, "steps": int(x_train.shape[1]),
                     "n_channels": split.n_channels},
            "architecture": architecture(model),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "epoch": epochs_done, "step": step, "steps_per_epoch": steps_per_epoch,
            "sampler": {"seed": args.seed, "epoch": epochs_done, "shuffle": True,
                        "num_replicas": dist_.world},
            "ranks": ranks, "world_size": dist_.world, "history": history,
            "seconds": seconds_before + time.time() - t0,
            "sepconv_version": sepconv.__version__, "torch_version": str(torch.__version__),
        })

    def stopped(epochs_done: int, step: int) -> int:
        signum = dist_.largest(stop.signum)
        if dist_.main:
            at = (f"epoch {epochs_done + 1}, step {step} of {steps_per_epoch}" if step
                  else f"epoch {epochs_done}")
            print(f"sepconv train: stopped by {signal.Signals(signum).name} after {at}; "
                  f"checkpoint {ckpt_path}; resume with: "
                  f"{resume_command(argv, out, dist_.world)}", file=sys.stderr)
            sys.stderr.flush()
        dist_.barrier()  # no rank leaves before the checkpoint is on disk
        return 128 + signum

    from tqdm import tqdm

    bar = tqdm(total=args.epochs, initial=start_epoch, desc=f"train {split.name}",
               unit="epoch", disable=not dist_.main or args.no_progress, dynamic_ncols=True)
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        order = list(sampler)
        sums = [0.0, 0.0, 0.0, 0.0]  # cross-entropy, penalty x cases, correct, cases
        first = 0
        if epoch == start_epoch and start_step:
            order, sums, first = list(mine["order"]), list(mine["partial"]), start_step
        net.train()
        for step in range(first, steps_per_epoch):
            _fault_hook("step", epoch * steps_per_epoch + step + 1)
            idx = order[step * per_rank:(step + 1) * per_rank]
            xb = x_train[idx].to(dist_.device)
            yb = y_train[idx].to(dist_.device)
            logits = net(xb)
            data_loss = F.cross_entropy(logits, yb)
            penalty = sepconv.regularization_loss(model)
            loss = data_loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()  # constraints are projected here, on every rank
            n = len(idx)
            sums[0] += data_loss.item() * n
            sums[1] += penalty.item() * n
            sums[2] += float((logits.argmax(1) == yb).sum())
            sums[3] += n
            if step + 1 < steps_per_epoch and dist_.largest(stop.signum):
                save(epoch, step + 1, sums, order)
                bar.close()
                return stopped(epoch, step + 1)
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        t_loss, t_correct, t_n = accuracy_and_loss(model, x_test[test_idx], y_test[test_idx],
                                                   dist_.device)
        ce, pen, correct, n, t_loss, t_correct, t_n = dist_.sum(
            sums + [t_loss, t_correct, float(t_n)])
        row = {"epoch": epoch + 1, "train_loss": ce / n, "penalty": pen / n,
               "train_accuracy": correct / n, "test_loss": t_loss / t_n,
               "test_accuracy": t_correct / t_n, "lr": lr}
        history.append(row)
        save(epoch + 1, 0, None, None)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_accuracy']:.3f}",
                        test_acc=f"{row['test_accuracy']:.3f}", refresh=False)
        bar.update(1)
        if epoch + 1 < args.epochs and dist_.largest(stop.signum):
            bar.close()
            return stopped(epoch + 1, 0)
    bar.close()
    elapsed = seconds_before + time.time() - t0

    in_sync = _replicas_max_difference(model, dist_)
    max_pointwise = _constraint_report(model, args.max_norm)
    final = history[-1]
    if dist_.main:
        # Score the saved model exactly as `evaluate` will.
        _, correct, n = accuracy_and_loss(model, x_test, y_test, dist_.device)
        test_accuracy = correct / n
        results = {
            "dataset": split.name, "test_accuracy": test_accuracy, "test_cases": n,
            "train_cases": len(x_train), "epochs": args.epochs, "seconds": elapsed,
            "processes": dist_.world, "device": str(dist_.device), "parameters": n_params,
            "final_train_loss": final["train_loss"], "final_penalty": final["penalty"],
            "max_pointwise_filter_norm": max_pointwise,
            "replicas_max_abs_difference": in_sync,
            "published": [{"model": m, "accuracy": a / 100, "source": SOURCES[s]}
                          for m, a, s in PUBLISHED.get(split.name, [])],
            "args": {k: v for k, v in vars(args).items()},
        }
        checkpoint = {
            "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "sepconv_version": sepconv.__version__, "dataset": split.name,
            "classes": list(split.classes), "n_channels": split.n_channels,
            "steps": int(x_train.shape[1]), "normalization": norm.to_dict(),
            "architecture": architecture(model),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "test_accuracy": test_accuracy, "seed": args.seed, "epochs": args.epochs,
        }
        atomic_write(os.path.join(out, "model.pt"), lambda f: torch.save(checkpoint, f))
        for name, obj in (("history.json", history), ("results.json", results)):
            text = json.dumps(obj, indent=1).encode()
            atomic_write(os.path.join(out, name), lambda f: f.write(text))
        plot_curves(history, os.path.join(out, "curves.png"), split.name)
        print(report(split.name, test_accuracy, n, elapsed, dist_.world, max_pointwise,
                     args.max_norm, in_sync, out))
    dist_.barrier()
    return 0


def report(name: str, accuracy: float, n: int, seconds: float, world: int,
           max_pointwise: Optional[float], max_norm: float, in_sync: float, out: str) -> str:
    lines = [f"\nTest accuracy on {name} ({n} test cases, fixed archive split): "
             f"{100 * accuracy:.1f}%   [this run, {seconds:.0f} s, "
             f"{world} process{'es' if world > 1 else ''}]"]
    rows = PUBLISHED.get(name, [])
    if rows:
        keys = []
        lines.append("Published on the same split:")
        for model, acc, src in rows:
            if src not in keys:
                keys.append(src)
            lines.append(f"  {model:<14}{acc:5.1f}%   [{keys.index(src) + 1}]")
        for i, key in enumerate(keys):
            lines.append(f"  [{i + 1}] {SOURCES[key]}")
    else:
        lines.append("No published deep-learning accuracy is quoted for this data set.")
    if max_pointwise is not None:
        lines.append(f"Constraint: largest pointwise filter norm {max_pointwise:.4f} "
                     f"(max_norm {max_norm:g})")
    if world > 1:
        lines.append(f"Replicas in sync: largest parameter difference across ranks "
                     f"{in_sync:.3g}")
    lines.append(f"Wrote {os.path.join(out, 'model.pt')}, curves.png, history.json, "
                 f"results.json and the last {CHECKPOINT_FILE} in {out}")
    lines.append(f"Reload: {PROG} evaluate --model {os.path.join(out, 'model.pt')}")
    return "\n".join(lines)


def plot_curves(history: List[Dict[str, float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train cross-entropy")
    ax1.plot(epochs, [h["train_loss"] + h["penalty"] for h in history],
             label="train loss + L2 penalty", linestyle=":")
    ax1.plot(epochs, [h["test_loss"] for h in history], label="test cross-entropy")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    fig.suptitle(f"sepconv SeparableConv1D network on {title}")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Evaluation.


def load_model(path: str, device: torch.device = torch.device("cpu")):
    """Rebuild a model written by ``train``: returns ``(model, checkpoint)``."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.exists(path):
        raise UsageError(f"--model {path!r}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"--model {path!r} is not a sepconv model file (written by "
                         f"`{PROG} train`): torch.load failed with {type(exc).__name__}")
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        raise UsageError(f"--model {path!r} is not a sepconv model file (written by "
                         f"`{PROG} train`)")
    if ckpt.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise UsageError(f"--model {path!r} was written by a newer sepconv "
                         f"({ckpt.get('sepconv_version')}); upgrade sepconv")
    try:
        model = from_architecture(ckpt["architecture"])
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, ckpt["steps"], ckpt["n_channels"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--model {path!r}: cannot rebuild the model it describes: "
                         f"{type(exc).__name__}: {str(exc)[:300]}")
    return model.to(device).eval(), ckpt


def run_evaluate(args) -> int:
    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device)
    split = datasets.load(ckpt["dataset"])
    if list(split.classes) != list(ckpt["classes"]):
        raise UsageError(f"the installed {split.name} has classes {split.classes}, the model "
                         f"was trained on {ckpt['classes']}")
    norm = datasets.Normalizer.from_dict(ckpt["normalization"])
    x = torch.from_numpy(norm(split.x_test, split.lengths_test))
    if x.shape[1] != ckpt["steps"]:
        raise UsageError(f"the installed {split.name} has {x.shape[1]} steps, the model "
                         f"was trained on {ckpt['steps']}")
    _, correct, n = accuracy_and_loss(model, x, torch.from_numpy(split.y_test), device,
                                      args.batch_size)
    acc = correct / n
    recorded = ckpt.get("test_accuracy")
    print(f"Test accuracy on {split.name} ({n} test cases): {100 * acc:.2f}%")
    if recorded is not None:
        same = "same as" if abs(recorded - acc) < 1e-9 else "DIFFERS from"
        print(f"Recorded at training: {100 * recorded:.2f}% ({same} this evaluation)")
    for m, a, s in PUBLISHED.get(split.name, []):
        print(f"  published {m:<14}{a:5.1f}%")
    return 0


# ---------------------------------------------------------------------------------------


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_train_extra(command: str) -> None:
    """One line naming ``pip install "sepconv[train]"`` when the main job's packages are
    missing (the library itself needs torch and numpy alone)."""
    missing = []
    try:
        datasets.data_root()
    except datasets.DatasetError:
        missing.append("sktime (the data files)")
    if command == "train":
        missing += [m for m in ("tqdm", "matplotlib") if not _installed(m)]
    if missing:
        raise UsageError(f"the main job needs sepconv's train extra ({', '.join(missing)} "
                         f"not installed): {TRAIN_EXTRA}")


def _explicit_options(argv: List[str]) -> List[str]:
    """Destinations of the train options given on the command line."""
    unset = object()
    shadow = train_parser()
    shadow.set_defaults(**{a.dest: unset for a in shadow._actions if a.dest != "help"})
    return sorted(k for k, v in vars(shadow.parse_args(argv)).items() if v is not unset)


def main(command: str, argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m sepconv train|evaluate``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if command in ("train", "evaluate") and not {"-h", "--help"} & set(argv):
            require_train_extra(command)
        if command == "train":
            args = train_parser().parse_args(argv)
            return run_train(args, _explicit_options(argv), argv)
        if command == "evaluate":
            return run_evaluate(evaluate_parser().parse_args(argv))
        raise UsageError(f"unknown command {command!r}; expected 'train' or 'evaluate'")
    except (UsageError, datasets.DatasetError) as exc:
        if _rank_from_env() == 0:
            print(f"{PROG} {command}: error: {exc}", file=sys.stderr)
        return 2
