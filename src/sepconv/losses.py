"""Model-wide Keras losses: the sum of every layer's ``losses``."""

from __future__ import annotations

import torch


def regularization_loss(module: torch.nn.Module) -> torch.Tensor:
    """Sum of the weight and activity penalties of every sepconv layer in ``module``.

    Add it to the data loss before ``backward()``, as Keras adds ``model.losses``.
    Returns a zero scalar when there are none.
    """
    total = None
    for sub in module.modules():
        for loss in getattr(sub, "losses", None) or ():
            total = loss if total is None else total + loss.to(total.device)
    if total is None:
        p = next(module.parameters(), None)
        return torch.zeros((), device=None if p is None else p.device)
    return total
