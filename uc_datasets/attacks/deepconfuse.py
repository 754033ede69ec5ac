"""DeepConfuse (Feng, Cai and Zhou, "Learning to Confuse", NeurIPS 2019): **deferred, not implemented**.

DeepConfuse trains an auto-encoder ``g`` whose bounded output, added to the training images,
makes a classifier trained on them fail on clean data. ``g`` and the classifier ``f`` are
trained against each other: ``f`` is trained on ``x + g(x)`` while its trajectory is
remembered, and ``g`` is updated through (a differentiable approximation of) that training
so that the trained ``f`` does badly on clean data.

Why it is not here: a faithful version needs the paper's algorithm in detail (how the
classifier trajectory is memorised and replayed, the one-step "pseudo-update" through which
``g`` receives gradients, the alternation schedule, the auto-encoder's architecture and
output bound, learning rates, and whether ``f`` is reset between trials). The paper and its
code are not available offline here, and a guessed approximation would be an imitation
under its name, which the issue rules out.

What it would take: the paper's Algorithm 1 and the reference code (kingfengji/DeepConfuse);
a U-Net-style auto-encoder with a ``epsilon * tanh`` output at the working resolution; a
functional classifier (``torch.func.functional_call``) so that the pseudo-update
``theta' = theta - lr * grad_theta L(f_theta(x + g(x)), y)`` can be differentiated with respect
to ``g``'s weights (second-order gradients, memory ~2x a training step); a GPU for anything
beyond toy sizes. It would then be a sample-wise protector like EMaxN (the auto-encoder's
output for each fit image, stored and keyed by content hash), or, since ``g`` generalises, a
protector that runs ``g`` on unseen images.

Example:
    >>> from uc_datasets.attacks import deepconfuse
    >>> deepconfuse.fit(ds)  # doctest: +SKIP
    Traceback (most recent call last):
    NotImplementedError: DeepConfuse is deferred: ...
"""

from __future__ import annotations

import datasets

__all__ = ["NOTE", "fit"]

NOTE = ("DeepConfuse is deferred: a faithful implementation needs the paper's Algorithm 1 details (trajectory memory, "
        "pseudo-update, auto-encoder architecture and schedule), which are not available offline here, and an "
        "approximation must not ship under its name. See uc_datasets/attacks/deepconfuse.py for what it would take.")


def fit(ds: datasets.Dataset, **kwargs: object) -> None:
    """Always raises ``NotImplementedError`` (see the module docstring)."""
    raise NotImplementedError(NOTE)
