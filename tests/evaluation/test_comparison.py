"""The comparison engine: one clean victim per seed, defence and labelling, shared and kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uc_datasets.evaluation.comparison import (
    ProtectedSets,
    clean_key,
    cleans_from_rows,
    load_clean_victims,
    save_clean_victims,
    sweep,
)
from uc_datasets.evaluation.relabel import identity_relabeling, kmeans_relabeling
from uc_datasets.evaluation.reporting import ROW_KEYS, clean_from_row, result_row

ROW_KEYS_OF_RUN = {"dataset": "d", "surrogate": "s", "victim": "resnet18", "width": 0.1, "epochs": 1,
                   "protected_fraction": 1.0}


class CountingRunner:
    """A stand-in victim: accuracy 0.9 on clean images, 0.2 on protected ones; counts trainings."""

    def __init__(self, clean: torch.Tensor, fail: str | None = None):
        self.clean, self.fail, self.calls = clean, fail, []
        self.trainings, self.seconds = 0, 0.0

    def matches(self, clean):  # every recorded clean victim was scored like this runner scores
        return True

    def accuracy(self, images, labels, n_classes, defense, seed, test_labels, clean=None, augment="crop"):
        is_clean = images is self.clean
        self.calls.append(("clean" if is_clean else "protected", n_classes, defense, seed, clean))
        self.trainings += 1
        if self.fail and not is_clean:
            raise RuntimeError(self.fail)
        acc = 0.9 if is_clean else 0.2
        chance = 1 / n_classes
        score = None if clean is None else (acc - chance) / (clean["accuracy"] - chance)
        return {"accuracy": acc, "accuracy_best": acc, "chance": chance, "protection_score": score,
                "protection_score_best": score, "best_epoch": 1, "accuracy_per_epoch": [acc]}


@pytest.fixture()
def sets() -> ProtectedSets:
    clean = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3] * 2)
    s = ProtectedSets(clean, labels, clean[:4].clone(), torch.tensor([0, 1, 2, 3]))
    s.add("A", clean.clone(), groups=labels.numpy(), p=4)
    s.add("B", clean.clone(), p=8)
    return s


def test_one_clean_victim_per_seed_defence_and_labelling_shared_by_every_set(sets):
    names = ["a", "b", "c", "d"]
    original = identity_relabeling(names)
    two = kmeans_relabeling(names, 2, embeddings=np.eye(4)[[0, 0, 1, 1]] + 1e-3 * np.eye(4))
    runner = CountingRunner(sets.clean)
    cleans: dict = {}
    plan = [("none", ["A", "B"], [original, two]), ("jpeg", ["A"], [original]), ("none", ["B"], [original])]
    rows = sweep(sets, plan, runner, seeds=(0, 1), row_keys=ROW_KEYS_OF_RUN, cleans=cleans)
    clean_calls = [c for c in runner.calls if c[0] == "clean"]
    assert len(clean_calls) == 2 * 3 and len(cleans) == 6  # (none, 4), (none, 2), (jpeg, 4) per seed
    assert len(rows) == 2 * (4 + 1 + 1)
    assert all(set(ROW_KEYS) <= set(r) for r in rows)
    a = next(r for r in rows if r["method"] == "A" and r["n_classes"] == 4 and r["defense"] == "none")
    assert a["nmi"] == pytest.approx(1.0) and a["cluster_rule_acc"] == 1.0 and a["p"] == 4
    assert next(r for r in rows if r["method"] == "B")["nmi"] is None
    assert a["protection_score"] == pytest.approx((0.2 - 0.25) / (0.9 - 0.25))
    # a second sweep with the same cache trains no clean victim again
    runner2 = CountingRunner(sets.clean)
    sweep(sets, [("none", ["B"], [original])], runner2, seeds=(1,), row_keys=ROW_KEYS_OF_RUN, cleans=cleans)
    assert [c[0] for c in runner2.calls] == ["protected"] and runner2.calls[0][4] is not None


def test_a_failed_victim_is_a_row_with_its_error(sets):
    runner = CountingRunner(sets.clean, fail="out of memory")
    (row,) = sweep(sets, [("none", ["A"], [identity_relabeling(list("abcd"))])], runner, seeds=(0,),
                   row_keys=ROW_KEYS_OF_RUN)
    assert row["protected_acc"] is None and row["clean_acc"] == 0.9
    assert row["error"] == "RuntimeError: out of memory"


def test_clean_victims_round_trip_through_rows_and_the_cache_file(sets, tmp_path):
    runner = CountingRunner(sets.clean)
    rows = sweep(sets, [("none", ["A", "B"], [identity_relabeling(list("abcd"))])], runner, seeds=(3,),
                 row_keys=ROW_KEYS_OF_RUN)
    from_rows = cleans_from_rows(rows + [{**rows[0], "attacker": "pseudo-labels n=2"}])
    key = clean_key(3, "none", 4, "original")
    assert list(from_rows) == [key] and from_rows[key][0]["accuracy"] == 0.9
    assert clean_from_row({"clean_acc": 0.5, "clean_acc_best": None, "chance": 0.1}) is None
    clean = from_rows[key][0]
    assert clean_from_row(result_row(clean=clean, scores=None, **{k: rows[0][k] for k in ROW_KEYS[:11]})) == clean
    path = tmp_path / "cache" / "clean_victims.json"
    save_clean_victims(path, from_rows)
    save_clean_victims(path, {clean_key(4, "jpeg", 2, "minilm-kmeans"): (None, "clean victim: boom")})
    loaded = load_clean_victims(path)
    assert loaded[key] == from_rows[key] and loaded[(4, "jpeg", 2, "minilm-kmeans")] == (None, "clean victim: boom")
    assert load_clean_victims(tmp_path / "missing.json") == {} and load_clean_victims(None) == {}


def test_protected_sets_refuse_images_of_another_shape_or_type(sets):
    with pytest.raises(ValueError, match="uint8 of the clean set's shape"):
        sets.add("C", sets.clean[:4])
    with pytest.raises(ValueError, match="uint8"):
        sets.add("C", sets.clean.float())
    fresh = sets.without_protected()
    assert fresh.protected == {} and fresh.clean is sets.clean
