"""Constants and helpers shared by the baseline tests (fixtures are in conftest.py)."""

from __future__ import annotations

import numpy as np

EPS = 8 / 255
#: Tiny settings for every method (fits take well under a second on 2 cores).
COMMON = dict(epsilon=EPS, seed=0, progress=False)
TINY = {
    "eminn": dict(steps=2, train_steps=2, max_rounds=2, model_width=0.125, batch_size=8),
    "eminn-classwise": dict(steps=1, train_steps=2, max_rounds=2, model_width=0.125, batch_size=8),
    "emaxn": dict(steps=3, train_epochs=1, model_width=0.125, batch_size=8),
    "advpoison": dict(steps=3, train_epochs=1, model_width=0.125, batch_size=8),
    "synper": dict(grid=4),
    "deepconfuse": {"trials": 1, "classifier_epochs": 1, "batch_size": 8, "model_width": 0.125,
                    "generator_channels": 4, "generator_depth": 2},
}
BASELINES = tuple(TINY)
SAMPLEWISE = ("eminn", "emaxn", "advpoison", "deepconfuse")
CLASSWISE = ("eminn-classwise", "synper")
#: Methods whose noise is ``epsilon * tanh(.)``: within the bound, but not necessarily reaching it.
TANH_BOUNDED = ("deepconfuse",)


def arrays(ds) -> list[np.ndarray]:
    return [np.asarray(r["image"]) for r in ds]


