"""A Keras model file's compile settings (``compile(loss=..., optimizer=...)``) for the
torch model :func:`sepconv.load_keras_model` gave: :func:`load_keras_training`.

An ``.h5`` file keeps them in its ``training_config`` attribute and the optimizer's
variables in ``optimizer_weights``; a ``.keras`` file in ``config.json``'s
``compile_config`` and ``model.weights.h5``'s ``optimizer/vars``.  The loss and the
optimizer come from :mod:`sepconv.losses` and :mod:`sepconv.optimizers` (tf-keras 2.21's
formulas, or Keras 3.15's for a file Keras 3 wrote: its TensorFlow backend's rules,
``flavour="keras3_tf"``, unless the file says its torch backend wrote it); the
optimizer's saved state (the step count, the moments; a Keras 3 file's learning rate and
Nadam's momentum product too) goes into the torch optimizer, so training resumes where
``fit`` stopped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .. import losses as _losses
from .. import optimizers as _optimizers
from .._registry import custom_object_scope
from . import files as _files
from .files import KerasFileError

#: each optimizer's slot variables, in the order tf-keras' (and Keras 3's) ``build``
#: creates them (one list per name; the state key ours keeps it under)
_SLOTS = {
    "SGD": lambda g: [("m", "momentum")],
    "Adam": lambda g: [("m", "m"), ("v", "v")] + ([("vhat", "vhat")] if g["amsgrad"] else []),
    "RMSprop": lambda g: [("velocity", "velocity")]
    + ([("momentum", "momentum")] if g["momentum"] > 0 else [])
    + ([("average_gradient", "average_gradient")] if g["centered"] else []),
    "Adagrad": lambda g: [("accumulator", "accumulator")],
    "Adamax": lambda g: [("m", "m"), ("u", "u")],
    "Nadam": lambda g: [("m", "m"), ("v", "v")],
}
_SLOTS["AdamW"] = _SLOTS["Adam"]
#: the slots tf-keras creates for every variable in turn (interleaved), not list by list
_INTERLEAVED = {("SGD", "m"), ("Adam", "m"), ("Adam", "v"), ("AdamW", "m"), ("AdamW", "v"),
                ("Adamax", "m"), ("Adamax", "u"), ("Nadam", "m"), ("Nadam", "v")}


@dataclass
class KerasTraining:
    """What ``compile`` was given, for the torch model: ``loss`` (a
    :class:`sepconv.losses.Loss` or your callable; a list or dict of them, by output
    position or output layer name, for several outputs), ``optimizer`` (a
    :class:`sepconv.optimizers.Optimizer` over the model's trainable parameters, with
    the file's state when it holds one; ``None`` if the file names none), ``loss_weights``
    and ``metrics`` (the file's values: metrics are not computed here), ``config`` (the
    file's dict)."""

    model: torch.nn.Module
    loss: Any
    optimizer: Optional[torch.optim.Optimizer]
    loss_weights: Any = None
    metrics: Any = None
    config: Dict[str, Any] = field(default_factory=dict)

    def compute_loss(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        """Keras' compiled loss: each output's loss (times its ``loss_weights``), summed,
        plus the model's regularization penalties (:func:`sepconv.regularization_loss`)."""
        outputs = list(y_pred) if isinstance(y_pred, (list, tuple)) else [y_pred]
        trues = list(y_true) if isinstance(y_true, (list, tuple)) and len(outputs) > 1 \
            else [y_true]
        if len(trues) != len(outputs):
            raise ValueError(f"The model has {len(outputs)} outputs; received "
                             f"{len(trues)} targets")
        names = _output_names(self.model, len(outputs))
        total = None
        for i, (t, p) in enumerate(zip(trues, outputs)):
            fn = _pick(self.loss, i, names, "loss")
            if fn is None:
                continue
            value = fn(t, p, sample_weight=sample_weight) if isinstance(fn, _losses.Loss) \
                else _losses.reduce_weighted_loss(fn(t, p), sample_weight)
            weight = _pick(self.loss_weights, i, names, "loss_weights")
            if weight is not None:
                value = value * weight
            total = value if total is None else total + value
        penalty = _losses.regularization_loss(self.model)
        return penalty if total is None else total + penalty.to(total.device)

    def train_step(self, x: Any, y: Any, sample_weight: Any = None) -> float:
        """One step of ``fit`` on one batch: the model in training mode called on ``x``
        (a tensor, or a list for several inputs), :meth:`compute_loss`, backward, the
        optimizer's step.  Returns the loss."""
        if self.optimizer is None:
            raise ValueError("The file names no optimizer: set `training.optimizer`")
        self.model.train()
        inputs = x if isinstance(x, (list, tuple)) else [x]
        self.optimizer.zero_grad()
        value = self.compute_loss(y, self.model(*inputs), sample_weight)
        value.backward()
        self.optimizer.step()
        return float(value.detach())


def _output_names(model: torch.nn.Module, n: int) -> List[str]:
    refs = getattr(model, "output_refs", None)
    if refs is not None and len(refs) == n:
        return [r[0] for r in refs]
    return [str(i) for i in range(n)]


def _pick(value: Any, i: int, names: List[str], what: str) -> Any:
    if isinstance(value, dict):
        return value.get(names[i])
    if isinstance(value, (list, tuple)):
        if i >= len(value):
            raise ValueError(f"`{what}` has {len(value)} entries; the model has more outputs")
        return value[i]
    return value


def _resolve_losses(config: Any) -> Any:
    if isinstance(config, dict) and "class_name" not in config:
        return {k: _resolve_losses(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_resolve_losses(v) for v in config]
    if config is None:
        return None
    return _losses.get(_plain_config(config), "loss")


def _plain_config(value: Any) -> Any:
    """A Keras 3 / tf-keras serialized object (``module``, ``registered_name`` keys)
    as ``{"class_name", "config"}``."""
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"], "config": value.get("config") or {},
                **({"registered_name": value["registered_name"]}
                   if value.get("registered_name") else {})}
    return value


def load_keras_training(path: Any, model: torch.nn.Module,
                        custom_objects: Optional[Dict[str, Any]] = None,
                        optimizer_state: bool = True) -> KerasTraining:
    """The loss, optimizer, loss weights and metrics ``path`` was compiled with, for
    ``model`` (what :func:`sepconv.load_keras_model` gave for the same file).

    ``optimizer_state``: put the saved optimizer variables (a tf-keras file's step count
    and moments) into the optimizer, so training goes on as ``fit`` would have; a file
    whose variables do not match the model's trainable weights keeps a fresh optimizer,
    with a warning.  ``custom_objects``: your losses (functions ``(y_true, y_pred) ->
    per-sample losses`` or :class:`sepconv.losses.Loss` classes) by the name the file
    uses.  Raises ``KerasFileError`` for a file saved without ``compile``.

    Example (tf-keras ``model.compile("adam", "categorical_crossentropy");
    model.fit(...); model.save("m.h5")``, then)::

        model = sepconv.load_keras_model("m.h5")
        training = sepconv.load_keras_training("m.h5", model)
        for x, y in batches:
            loss = training.train_step(x, y)
    """
    kf = _files.read(path)
    label = os.fspath(path)
    config = kf.training_config
    if kf.kind not in ("h5", "keras"):
        raise KerasFileError(f"{label}: sepconv reads the compile settings of .h5 and "
                             f".keras model files (this is a {kf.kind} file)")
    if not config:
        raise KerasFileError(f"{label} holds no compile settings: the model was saved "
                             f"without compile(...)")
    with custom_object_scope(custom_objects):
        loss = _resolve_losses(config.get("loss"))
    opt_config = config.get("optimizer_config", config.get("optimizer"))
    optimizer = None
    if opt_config is not None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = _optimizers.get(_plain_config(opt_config), params,
                                    flavour=_optimizer_flavour(kf, opt_config))
        if optimizer_state and kf.optimizer_weights:
            problem = _load_state(optimizer, model, kf)
            if problem:
                warnings.warn(f"{label}: the optimizer's saved state is not loaded ({problem}); "
                              f"it starts afresh", stacklevel=2)
    return KerasTraining(model=model, loss=loss, optimizer=optimizer,
                         loss_weights=config.get("loss_weights"),
                         metrics=config.get("metrics"), config=config)


def _optimizer_flavour(kf: "_files.KerasFile", opt_config: Any) -> str:
    """Whose update rules resume the file's training: tf-keras' for its files; for a Keras 3
    file, its backend's (an ``.h5`` file's ``backend`` attribute; a ``.keras`` file's
    optimizer names the torch backend's own classes by module,
    ``keras.src.backend.torch.optimizers...``, where TensorFlow (and JAX) run Keras 3's
    generic rules, ``"keras3_tf"``)."""
    if kf.flavour != "keras3":
        return kf.flavour
    backend = kf.backend
    if backend is None:
        module = opt_config.get("module") if isinstance(opt_config, dict) else None
        backend = "torch" if ".backend.torch." in str(module or "") else "tensorflow"
    return "keras3" if backend == "torch" else "keras3_tf"


def _load_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                kf: "_files.KerasFile") -> Optional[str]:
    """Puts a tf-keras or Keras 3 optimizer's variables into ``optimizer``; a reason
    otherwise.  tf-keras: the step count, then the slots.  Keras 3: the step count, the
    learning rate (unless a schedule gives it), the slots (SGD's momentum only when
    ``momentum`` is not 0), and last Nadam's momentum product."""
    kind = type(optimizer).__name__
    if kind not in _SLOTS or len(optimizer.param_groups) != 1:
        return f"no layout known for {kind}"
    group = optimizer.param_groups[0]
    slots = _SLOTS[kind](group)
    keras3 = kf.flavour == "keras3"
    if keras3 and kind == "SGD" and not group["momentum"]:
        slots = []
    # (Keras 3's variables around the slots: before them, after them)
    head = 1 + (keras3 and not callable(group["learning_rate"]))
    tail = int(keras3 and kind == "Nadam")
    arrays = [a for _, a in kf.optimizer_weights]
    names = [n for n, _ in kf.optimizer_weights]
    from .models import _keras_layers
    layers = list(_keras_layers(model).items())
    # each layer's weights in Keras' order, and which of them Keras trains
    plan = []
    for lname, layer in layers:
        if not list(layer.parameters()):
            continue
        if not (hasattr(layer, "get_weights") and hasattr(layer, "set_weights")):
            return f"layer {lname!r} has no get_weights / set_weights"
        current = [np.array(w, copy=True) for w in layer.get_weights()]  # (views, some)
        flags = _trainable_flags(layer, len(current))
        if flags is None:
            return f"layer {lname!r}: its trainable weights are not known in Keras' order"
        plan.append((lname, layer, current, flags))
    n_vars = sum(sum(f) for *_, f in plan)
    needed = head + n_vars * len(slots) + tail
    if len(arrays) != needed:
        return (f"the file holds {len(arrays)} optimizer variables, {kind} over the "
                f"model's {n_vars} trainable weights needs {needed}")
    if names[0] is not None and not names[0].split("/")[-1].startswith("iteration"):
        return f"its first variable is {names[0]!r}, not the step count"
    # the slot arrays of each trainable weight, in Keras' variable order
    per_slot: Dict[str, List[np.ndarray]] = {s: [] for s, _ in slots}
    pos = head
    interleaved = [s for s, _ in slots if (kind, s) in _INTERLEAVED]
    for i in range(n_vars):
        for s in interleaved:
            per_slot[s].append(arrays[pos])
            pos += 1
    for s, _ in slots:
        if s not in interleaved:
            per_slot[s] = arrays[pos:pos + n_vars]
            pos += n_vars
    if names[0] is not None and not keras3:  # a named .h5: check each slot is its weight's
        expected = _expected_names(plan, kf)
        if expected is not None:
            got = names[1:]
            want = []
            for i in range(n_vars):
                want += [f"{s}/{expected[i]}" for s in interleaved]
            for s, _ in slots:
                if s not in interleaved:
                    want += [f"{s}/{w}" for w in expected]
            if any(not g.endswith("/" + w) for g, w in zip(got, want)):
                return "its variable names are not the model's weights in Keras' order"
    states: Dict[torch.nn.Parameter, Dict[str, torch.Tensor]] = {}
    for s, key in slots:
        values = iter(per_slot[s])
        for lname, layer, current, flags in plan:
            replaced = [next(values) if f else w for w, f in zip(current, flags)]
            try:
                layer.set_weights(replaced)  # the loader's own layout mapping
                for p in layer.parameters():
                    if p.requires_grad:
                        states.setdefault(p, {})[key] = p.detach().clone()
            finally:
                layer.set_weights(current)
    for p, state in states.items():
        optimizer.state[p] = state
    group["iterations"] = int(np.asarray(arrays[0]))
    if head == 2:  # (callbacks may have changed it since compile)
        group["learning_rate"] = float(np.asarray(arrays[1]))
    if tail:
        group["u_product"] = float(np.asarray(arrays[-1]))
    return None


def _trainable_flags(layer: torch.nn.Module, count: int) -> Optional[List[bool]]:
    names: Sequence[str] = list(getattr(layer, "_weight_order", []) or [])
    if len(names) != count:
        return None
    tensors = [getattr(layer, n, None) for n in names]
    if any(t is None for t in tensors):
        return None
    flags = [isinstance(t, torch.nn.Parameter) and t.requires_grad for t in tensors]
    if sum(flags) != sum(1 for p in layer.parameters() if p.requires_grad):
        return None
    return flags


def _expected_names(plan, kf) -> Optional[List[str]]:
    """The trainable weights' variable names in the file (``dense/kernel:0``), in
    Keras' order."""
    out = []
    for lname, _, current, flags in plan:
        wnames = kf.legacy_names.get(lname)
        if wnames is None or len(wnames) != len(flags):
            return None
        out += [w for w, f in zip(wnames, flags) if f]
    return out
