"""Real time-series classification data sets, read offline from files a PyPI wheel ships.

The UCR/UEA archive sets below travel inside the ``sktime`` wheel (installed by
sepconv's ``train`` extra: ``pip install "sepconv[train]"``) as
``sktime/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts``. They are read
straight from that folder, which is found with ``importlib.util.find_spec`` so that
sktime itself (and pandas, scikit-learn) is never imported and nothing is downloaded.
``aeon`` ships the same files in the same layout and is used when sktime is absent.

``load(name)`` returns a :class:`Split` of float32 arrays of shape
``(cases, steps, channels)`` (channels_last, as ``SeparableConv1D`` takes them) and int64
labels.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

#: Packages whose wheels carry the archive files, searched in this order.
PROVIDERS = ("sktime", "aeon")


@dataclass(frozen=True)
class Info:
    """What is known about a bundled set before reading it."""

    kind: str  # "univariate" or "multivariate"
    description: str


#: The classification sets used by ``python -m sepconv train``. Split sizes are the
#: archive's fixed train/test splits.
DATASETS: Dict[str, Info] = {
    "GunPoint": Info("univariate", "hand motion, 2 classes, 50 train / 150 test, length 150"),
    "ItalyPowerDemand": Info("univariate", "electricity demand, 2 classes, 67 / 1029, length 24"),
    "ArrowHead": Info("univariate", "arrowhead outlines, 3 classes, 36 / 175, length 251"),
    "OSULeaf": Info("univariate", "leaf outlines, 6 classes, 200 / 242, length 427"),
    "ACSF1": Info("univariate", "appliance power, 10 classes, 100 / 100, length 1460"),
    "PLAID": Info("univariate", "appliance current, 11 classes, 537 / 537, length 100-1344"),
    "BasicMotions": Info("multivariate", "smartwatch motion, 4 classes, 40 / 40, 6 channels, length 100"),
    "JapaneseVowels": Info("multivariate", "speaker cepstra, 9 classes, 270 / 370, 12 channels, length 7-29"),
}


class DatasetError(ValueError):
    """A data set that is unknown, not installed or unreadable."""


@dataclass
class Split:
    """One data set's fixed train/test split.

    ``x_train``: float32 ``(cases, steps, channels)``; ``y_train``: int64 ``(cases,)``.
    Series shorter than the longest are zero-padded at the end; ``lengths_*`` keep the
    true lengths.
    """

    name: str
    classes: List[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    lengths_train: np.ndarray
    lengths_test: np.ndarray
    source: str

    @property
    def n_channels(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def known() -> List[str]:
    return list(DATASETS)


def _resolve_name(name: str) -> str:
    for key in DATASETS:
        if key.lower() == str(name).lower():
            return key
    raise DatasetError(
        f"Unknown data set {name!r}. Known data sets: {', '.join(DATASETS)}."
    )


def data_root() -> Tuple[str, str]:
    """The installed folder holding the archive files, and the package it belongs to."""
    for package in PROVIDERS:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            root = os.path.join(location, "datasets", "data")
            if os.path.isdir(root):
                return root, package
    raise DatasetError(
        "No bundled UCR/UEA data found: sepconv reads them from the installed 'sktime' "
        "package, which comes with the train extra: pip install \"sepconv[train]\""
    )


def dataset_files(name: str) -> Tuple[str, str, str]:
    """Paths of ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` and the providing package."""
    name = _resolve_name(name)
    root, package = data_root()
    paths = tuple(os.path.join(root, name, f"{name}_{part}.ts") for part in ("TRAIN", "TEST"))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetError(
            f"Data set {name!r} is not in the installed {package!r} package "
            f"(looked for {missing[0]}). Known data sets: {', '.join(DATASETS)}."
        )
    return paths[0], paths[1], package


def read_ts(path: str) -> Tuple[List[np.ndarray], List[str], List[str]]:
    """Read a ``.ts`` file (the sktime/aeon text format of the UCR/UEA archives).

    Returns the series, each a float64 array ``(steps, channels)``, their labels, and the
    class labels declared by the ``@classLabel`` header in declared order.
    """
    series: List[np.ndarray] = []
    labels: List[str] = []
    classes: List[str] = []
    in_data = False
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@timestamps") and low.split()[-1] == "true":
                    raise DatasetError(f"{path}: time-stamped .ts files are not supported")
                if low.startswith("@classlabel"):
                    parts = line.split()
                    if len(parts) < 3 or parts[1].lower() != "true":
                        raise DatasetError(f"{path}: not a classification data set")
                    classes = parts[2:]
                if low.startswith("@data"):
                    in_data = True
                continue
            *dims, label = line.split(":")
            if not dims:
                raise DatasetError(f"{path}:{number}: expected 'values:...:label'")
            try:
                channels = [
                    np.array([float("nan") if v == "?" else float(v) for v in d.split(",")])
                    for d in dims
                ]
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from None
            length = len(channels[0])
            if any(len(c) != length for c in channels):
                raise DatasetError(f"{path}:{number}: channels of unequal length")
            series.append(np.stack(channels, axis=1))
            labels.append(label.strip())
    if not series:
        raise DatasetError(f"{path}: no cases after @data")
    if not classes:
        classes = sorted(set(labels))
    return series, labels, classes


def _pad(series: List[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(series), length, series[0].shape[1]), dtype=np.float64)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out


def load(name: str) -> Split:
    """Load a bundled data set's train/test split (no normalisation applied)."""
    train_path, test_path, package = dataset_files(name)
    name = _resolve_name(name)
    s_train, l_train, classes = read_ts(train_path)
    s_test, l_test, _ = read_ts(test_path)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(l_train + l_test) - set(index))
    if unknown:
        raise DatasetError(f"{name}: labels {unknown} are not declared by @classLabel")
    if s_train[0].shape[1] != s_test[0].shape[1]:
        raise DatasetError(f"{name}: train and test have different channel counts")
    length = max(max(len(s) for s in s_train), max(len(s) for s in s_test))
    return Split(
        name=name,
        classes=classes,
        x_train=_pad(s_train, length).astype(np.float32),
        y_train=np.array([index[l] for l in l_train], dtype=np.int64),
        x_test=_pad(s_test, length).astype(np.float32),
        y_test=np.array([index[l] for l in l_test], dtype=np.int64),
        lengths_train=np.array([len(s) for s in s_train], dtype=np.int64),
        lengths_test=np.array([len(s) for s in s_test], dtype=np.int64),
        source=f"{package}: {os.path.dirname(train_path)}",
    )


@dataclass(frozen=True)
class Normalizer:
    """Per-channel z-normalisation with statistics of the training split.

    Padding (steps past a series' true length) stays zero and is left out of the
    statistics; missing values become zero (the channel mean) after normalising.
    """

    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, lengths: Optional[np.ndarray] = None) -> "Normalizer":
        x = x.astype(np.float64)
        mask = np.ones(x.shape[:2], dtype=bool)
        if lengths is not None:
            mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
        values = x[mask]  # (valid steps, channels)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def __call__(self, x: np.ndarray, lengths: Optional[np.ndarray] = None) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        if x.shape[-1] != mean.shape[0]:
            raise ValueError(f"expected {mean.shape[0]} channels, got {x.shape[-1]}")
        out = (x.astype(np.float64) - mean) / std
        out = np.nan_to_num(out, nan=0.0)
        if lengths is not None:
            out[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "per_channel_zscore", "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"]))
