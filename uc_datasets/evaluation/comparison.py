"""Several protected sets against the same victims: the engine of the strength benchmark.

A :class:`ProtectedSets` holds one clean training set, its test split and any number of
protected copies of the training set (one per method or variant). :func:`sweep` trains, for
each seed, defence and labelling, one clean victim and one victim per protected set; the
clean victims are keyed by :func:`clean_key` and kept in a dict the caller may share between
sweeps, save (:func:`save_clean_victims`) and read back from a file or from recorded rows
(:func:`cleans_from_rows`), so no clean victim is trained twice. :func:`pseudo_sweep` and
:func:`simclr_sweep` are the same comparison against the pseudo-label and the SimCLR hacker.
Every row is a ``reporting.result_row`` plus the set's own columns (``ProtectedSets.meta``)
and the key agreement of its keys with the victim's labels (:func:`~.agreement.agreement`).

Example:
    >>> sets = ProtectedSets(clean, labels, test, test_labels)  # doctest: +SKIP
    >>> sets.add("UC", protected_images, groups=clusters, p=10)  # doctest: +SKIP
    >>> runner = VictimRunner(VictimSettings(epochs=12, batch_size=64, width=0.125), test)  # doctest: +SKIP
    >>> rows = sweep(sets, [("none", ["UC"], labelings)], runner, seeds=(0,), row_keys=keys)  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .agreement import agreement
from .relabel import Relabeling
from .reporting import clean_from_row, percent, result_row, write_json

__all__ = ["Plan", "ProtectedSets", "VictimRunner", "VictimSettings", "clean_key",
           "cleans_from_rows", "load_clean_victims", "make_labelings", "pseudo_sweep", "save_clean_victims",
           "simclr_sweep", "sweep"]

logger = logging.getLogger(__name__)

#: ``(defence, set names, labellings)``: which victims a sweep trains.
Plan = list[tuple[str, list[str], list[Relabeling]]]
#: A clean victim's scores (``train_and_score``) and the error of a failed one.
CleanVictim = tuple[dict | None, str | None]

SIMCLR_ATTACKER = "SimCLR + linear probe"


@dataclass
class ProtectedSets:
    """Clean and protected training images (uint8, (N, C, H, W)) with the test split.

    ``protected`` maps a set's name (the row's ``method``) to its images, ``groups`` to its
    perturbation key of every image (None: no key, e.g. sample-wise noise) and ``meta`` to the
    extra columns of its rows.
    """

    clean: torch.Tensor
    labels: torch.Tensor  # original class of every train image
    test: torch.Tensor
    test_labels: torch.Tensor
    protected: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: dict[str, np.ndarray | None] = field(default_factory=dict)
    meta: dict[str, dict] = field(default_factory=dict)

    def add(self, name: str, images: torch.Tensor, *, groups: np.ndarray | Sequence[int] | None = None,
            **meta: Any) -> None:
        """Add (or replace) the protected set ``name`` with its keys and row columns."""
        if images.shape != self.clean.shape or images.dtype != torch.uint8:
            raise ValueError(f"protected set {name!r} must be uint8 of the clean set's shape {tuple(self.clean.shape)},"
                             f" got {images.dtype} {tuple(images.shape)}")
        self.protected[name] = images
        self.groups[name] = None if groups is None else np.asarray(groups)
        self.meta[name] = dict(meta)

    def without_protected(self) -> ProtectedSets:
        """The same clean, label and test tensors, no protected set (a fresh seed's sets)."""
        return ProtectedSets(self.clean, self.labels, self.test, self.test_labels)


@dataclass(frozen=True)
class VictimSettings:
    """How the victims are built and trained (``train_and_score``): fixed before a run."""

    epochs: int
    batch_size: int
    lr: float = 0.1
    victim: str = "resnet18"
    width: float = 1.0
    test_batch_size: int = 512
    #: the step-resolved peak: evaluations an epoch in the first ``early_epochs`` epochs (1 / 0: per epoch)
    evals_per_epoch: int = 1
    early_epochs: int = 0


class VictimRunner:
    """Trains a victim from scratch and scores it on the clean test split, counting the time.

    Example:
        >>> runner = VictimRunner(VictimSettings(epochs=1, batch_size=4, width=0.0625), test)  # doctest: +SKIP
        >>> runner.accuracy(images, labels, 10, "none", 0, test_labels)["accuracy_best"]  # doctest: +SKIP
    """

    def __init__(self, settings: VictimSettings, test_images: torch.Tensor, *, progress: bool = False):
        from accelerate import Accelerator

        from .metrics import load_unlearnability

        self.settings, self.test_images, self.progress = settings, test_images, progress
        self.accelerator = Accelerator()
        self.metric = load_unlearnability()
        self.seconds = 0.0
        self.trainings = 0
        # train_victim/predict end with accelerate's free_memory(), a full gc.collect(); with
        # the long-lived objects (data, modules) frozen out of the collector it is cheap.
        gc.freeze()

    @property
    def step_resolved(self) -> bool:
        """Whether victims are evaluated several times an epoch (the step-resolved peak)."""
        return self.settings.evals_per_epoch > 1 and self.settings.early_epochs > 0

    def matches(self, clean: dict | None) -> bool:
        """Whether a recorded clean victim was scored the way this runner scores (a per-epoch clean
        victim cannot be the reference of a step-resolved peak); a failed one (None) matches."""
        return clean is None or self.step_resolved == (clean.get("accuracy_per_step") is not None)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int, defense: str, seed: int,
                 test_labels: list[int], clean: dict | None = None, augment: str = "crop") -> dict:
        """Train on ``images``/``labels`` (victim augmentation ``augment``) and return the final and
        best-epoch accuracy, chance and protection score (``sweep.train_and_score``); the scores
        are relative to ``clean`` (a clean victim's result) when given."""
        from .sweep import train_and_score
        from .victims import TrainConfig

        s = self.settings
        t0 = time.perf_counter()
        result = train_and_score(s.victim, images, labels, n_classes, self.test_images, test_labels,
                                 TrainConfig(s.epochs, s.batch_size, s.lr, augment=augment, seed=seed),
                                 defense=defense, width=s.width, clean=clean, accelerator=self.accelerator,
                                 progress=False, batch_size=s.test_batch_size, metric=self.metric,
                                 evals_per_epoch=s.evals_per_epoch, early_epochs=s.early_epochs)
        self.seconds += time.perf_counter() - t0
        self.trainings += 1
        return result


def make_labelings(class_names: Sequence[str], n_values: Sequence[int], encoder: str) -> list[Relabeling]:
    """The original labelling, then the class-name-embedding K-means relabellings into each n.

    ``encoder`` names the class-name encoder (``core.class_names``: ``"offline"``, a Hub id or a
    path) or a ``.npy`` file of precomputed class-name embeddings (one row per class).

    Example:
        >>> [lab.n_groups for lab in make_labelings(["a", "b", "c"], [2], "offline")]  # doctest: +SKIP
        [3, 2]
    """
    from ..core.class_names import embed_class_names
    from .relabel import identity_relabeling, kmeans_relabeling

    labelings = [identity_relabeling(list(class_names))]
    if n_values:
        emb = np.load(encoder) if encoder.endswith(".npy") else embed_class_names(list(class_names), encoder)
        labelings += [kmeans_relabeling(list(class_names), n, embeddings=emb) for n in n_values]
    for lab in labelings[1:]:
        logger.info("n=%d: %s", lab.n_groups, " || ".join(lab.group_names))
    return labelings


# --- the clean victims -----------------------------------------------------------------------


def clean_key(seed: int, defense: str, n_groups: int, relabel: str) -> tuple:
    """The key of one clean victim: trained once per seed, defence and labelling (``relabel`` is
    the labelling's method, as rows record it)."""
    return seed, defense, n_groups, relabel


def cleans_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, CleanVictim]:
    """The clean victims recorded in earlier rows, keyed as :func:`sweep` keys them: a run that
    fills missing cells retrains no clean victim it already measured. Rows of the pseudo-label
    and SimCLR attackers have their own clean victims and are left out.

    Example:
        >>> row = {"seed": 0, "defense": "none", "n_classes": 10, "relabel": "original", "clean_acc": 0.8,
        ...        "clean_acc_best": 0.81, "chance": 0.1, "clean_best_epoch": 3, "clean_acc_per_epoch": [0.81]}
        >>> cleans_from_rows([row])[(0, "none", 10, "original")][0]["accuracy_best"]
        0.81
    """
    cleans: dict[tuple, CleanVictim] = {}
    for r in rows:
        if r.get("attacker") or (clean := clean_from_row(r)) is None:
            continue
        cleans[clean_key(r["seed"], r["defense"], r["n_classes"], r["relabel"])] = clean, None
    return cleans


def load_clean_victims(path: str | os.PathLike | None) -> dict[tuple, CleanVictim]:
    """The clean victims saved by :func:`save_clean_victims` (empty without the file)."""
    if path is None or not Path(path).exists():
        return {}
    return {tuple(json.loads(k)): (v["clean"], v["error"]) for k, v in json.loads(Path(path).read_text()).items()}


def save_clean_victims(path: str | os.PathLike | None, cleans: Mapping[tuple, CleanVictim]) -> None:
    """Add ``cleans`` to the file at ``path`` (merged with what is there; nothing without a path)."""
    if path is None:
        return
    merged = {**load_clean_victims(path), **cleans}
    write_json(path, {json.dumps(list(k)): {"clean": c, "error": e} for k, (c, e) in merged.items()})


# --- the sweeps ------------------------------------------------------------------------------


def _row(row_keys: Mapping[str, Any], *, method: str, lab: Relabeling, defense: str, seed: int, clean: dict | None,
         result: dict | None, extra: Mapping[str, Any], error: str | None = None) -> dict:
    """``reporting.result_row`` of one victim: the run's ``row_keys``, then the set's ``extra``."""
    keys = {**row_keys, "method": method, "n_classes": lab.n_groups, "relabel": lab.method, "defense": defense,
            "seed": seed, **extra}
    row = result_row(clean=clean, scores=result, **keys)
    if error:
        row["error"] = error
    return row


def _train(runner: VictimRunner, what: str, *args: Any, **kwargs: Any) -> tuple[dict | None, str | None]:
    """``runner.accuracy(...)``, or (None, the error) when the training fails (recorded as measured)."""
    try:
        return runner.accuracy(*args, **kwargs), None
    except Exception as err:  # noqa: BLE001 - a failed victim is a measured outcome, recorded in its row
        logger.exception("%s failed", what)
        return None, f"{type(err).__name__}: {err}"


def sweep(sets: ProtectedSets, plan: Plan, runner: VictimRunner, *, seeds: Sequence[int],
          row_keys: Mapping[str, Any], on_rows: Callable[[list[dict]], None] | None = None,
          cleans: dict[tuple, CleanVictim] | None = None, progress: bool = False) -> list[dict]:
    """For each seed and ``(defence, set names, labellings)`` in ``plan``: per labelling one clean
    victim (trained once per seed, defence and labelling, however often the plan names it) and
    one victim per protected set. A failed training is recorded in its row.

    ``cleans`` (kept by the caller) shares the clean victims between several sweeps and runs;
    ``row_keys`` are the run's identity columns (``dataset``, ``surrogate``, ``victim``, ``width``,
    ``epochs``, ``protected_fraction``, ...); ``on_rows`` gets the rows so far after every job.
    """
    from tqdm.auto import tqdm

    jobs = [(seed, defense, methods, lab) for seed in seeds for defense, methods, labs in plan for lab in labs]
    cleans = {} if cleans is None else cleans
    n_clean = len({clean_key(seed, defense, lab.n_groups, lab.method) for seed, defense, _, lab in jobs} - set(cleans))
    bar = tqdm(total=n_clean + sum(len(m) for _, _, m, _ in jobs), desc="victims", disable=not progress)
    rows: list[dict] = []
    try:
        for seed, defense, methods, lab in jobs:
            train_y = torch.from_numpy(lab.map_labels(sets.labels))
            test_y = lab.map_labels(sets.test_labels).tolist()
            key = clean_key(seed, defense, lab.n_groups, lab.method)
            if key not in cleans or not runner.matches(cleans[key][0]):
                clean, error = _train(runner, "clean victim", sets.clean, train_y, lab.n_groups, defense, seed, test_y)
                cleans[key] = clean, None if error is None else f"clean victim: {error}"
                bar.update(1)
            clean, clean_error = cleans[key]
            for method in methods:
                result, error = None, clean_error
                if clean is not None:
                    result, error = _train(runner, f"{method} victim", sets.protected[method], train_y, lab.n_groups,
                                           defense, seed, test_y, clean=clean)
                extra = dict(sets.meta.get(method, {}))
                groups = sets.groups.get(method)
                extra["nmi"], extra["cluster_rule_acc"] = ((None, None) if groups is None
                                                           else agreement(groups, train_y.numpy()))
                rows.append(_row(row_keys, method=method, lab=lab, defense=defense, seed=seed, clean=clean,
                                 result=result, extra=extra, error=error))
                bar.update(1)
                r = rows[-1]
                logger.info("%s n=%d %s seed %d: clean %s, protected %s, chance %s", defense, lab.n_groups, method,
                            seed, percent(r["clean_acc"], 1), percent(r["protected_acc"], 1), percent(r["chance"], 1))
            if on_rows is not None:
                on_rows(rows)
    finally:
        gc.unfreeze()
        bar.close()
    logger.info("%d victims trained in %.0f s (%.1f s each)", runner.trainings, runner.seconds,
                runner.seconds / max(runner.trainings, 1))
    return rows


def pseudo_sweep(runner: VictimRunner, sets: ProtectedSets, methods: Sequence[str], n_values: Sequence[int],
                 seed: int, *, row_keys: Mapping[str, Any], encoder: str = "pixels-pca", image_size: int | None = None,
                 on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Victims on pseudo-labels: K-means of the hacker's own embedding (``encoder``, fit on the set
    the victim trains on) into n groups; test labels = nearest centre of each clean test image.
    ``encoder`` is ``"pixels-pca"`` or a surrogate (``image_size``: the size it embeds at).

    The clean victim clusters the clean set, each set's victim its protected images. Extra
    columns: ``pseudo_nmi_class`` (NMI of the pseudo-labels with the true classes) and
    ``pseudo_nmi_keys`` (with the set's perturbation keys), which say whether the hacker's
    clusters follow the classes or the protection.
    """
    from sklearn.metrics import normalized_mutual_info_score

    from .relabel import pseudo_labels_for

    rows: list[dict] = []
    for n in n_values:
        _, train_y, test_y = pseudo_labels_for(sets.clean, sets.test, n, encoder=encoder, seed=seed,
                                               image_size=image_size)
        clean, clean_error = _train(runner, "clean pseudo-label victim", sets.clean, train_y, n, "none", seed, test_y)
        clean_error = None if clean_error is None else f"clean victim: {clean_error}"
        for method in methods:
            m_lab, m_train_y, m_test_y = pseudo_labels_for(sets.protected[method], sets.test, n, encoder=encoder,
                                                           seed=seed, image_size=image_size)
            result, error = None, clean_error
            if clean is not None:
                result, error = _train(runner, f"{method} pseudo-label victim", sets.protected[method], m_train_y, n,
                                       "none", seed, m_test_y, clean=clean)
            keys = sets.groups.get(method)
            extra = {**sets.meta.get(method, {}), "attacker": f"pseudo-labels n={n}",
                     "pseudo_nmi_class": float(normalized_mutual_info_score(sets.labels.numpy(), m_lab.train_labels)),
                     "pseudo_nmi_keys": (None if keys is None else
                                         float(normalized_mutual_info_score(np.asarray(keys), m_lab.train_labels))),
                     "nmi": None, "cluster_rule_acc": None}
            rows.append(_row(row_keys, method=method, lab=m_lab, defense="none", seed=seed, clean=clean,
                             result=result, extra=extra, error=error))
            r = rows[-1]
            logger.info("pseudo n=%d %s seed %d: clean %s, protected %s (NMI with classes %.2f)", n, method, seed,
                        percent(r["clean_acc"], 1), percent(r["protected_acc"], 1), r["pseudo_nmi_class"])
        if on_rows is not None:
            on_rows(rows)
    return rows


def simclr_sweep(sets: ProtectedSets, methods: Sequence[str], seed: int, *, row_keys: Mapping[str, Any],
                 class_names: Sequence[str], epochs: int, width: float = 1.0, progress: bool = False) -> list[dict]:
    """The unsupervised hacker: SimCLR on the clean set and on each protected set, then a linear
    probe fit on the clean labelled train images; rows score the probe on the clean test split
    (``victim = simclr-resnet18``, ``attacker = SimCLR + linear probe``)."""
    from accelerate import Accelerator

    from .metrics import load_unlearnability
    from .relabel import identity_relabeling
    from .simclr import SimCLRConfig, simclr_probe

    metric, accelerator = load_unlearnability(), Accelerator()
    config = SimCLRConfig(epochs=epochs, batch_size=min(256, len(sets.labels)), seed=seed)
    test_y = sets.test_labels.tolist()
    lab = identity_relabeling(list(class_names))

    def probe(images: torch.Tensor) -> dict:
        result = simclr_probe(images, sets.clean, sets.labels, sets.test, sets.test_labels, config, width=width,
                              accelerator=accelerator, progress=progress)
        logger.info("SimCLR probe %.1f%% (loss %s, %.0f s)", 100 * result["probe_acc"],
                    [round(v, 2) for v in result["loss_history"]], result["seconds"])
        return result

    clean_probe = probe(sets.clean)
    clean = metric.compute(predictions=clean_probe["predictions"].tolist(), references=test_y)
    rows = []
    for method in methods:
        result = probe(sets.protected[method])
        scores = metric.compute(predictions=result["predictions"].tolist(), references=test_y,
                                clean_accuracy=clean["accuracy"])
        extra = {**sets.meta.get(method, {}), "attacker": SIMCLR_ATTACKER, "victim": "simclr-resnet18",
                 "epochs": epochs, "simclr_loss": result["loss_history"],
                 "simclr_clean_loss": clean_probe["loss_history"], "nmi": None, "cluster_rule_acc": None}
        rows.append(_row(row_keys, method=method, lab=lab, defense="none", seed=seed, clean=clean, result=scores,
                         extra=extra))
    return rows
