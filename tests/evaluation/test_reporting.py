"""The markdown table of evaluation rows (the plot and files are checked by test_evaluation's sweep)."""

from uc_datasets.evaluation.reporting import results_table, worst_attacker


def test_results_table_format():
    row = {"victim": "resnet18", "defense": "mixup", "protected_fraction": 0.5, "relabel": "bert-kmeans",
           "n_classes": 5, "seed": 1, "clean_acc": 0.6231, "protected_acc": 0.1221, "chance": 0.2,
           "protection_score": None}
    lines = results_table([row]).splitlines()
    assert lines[2] == "| resnet18 | mixup | 0.5 | bert-kmeans | 5 | 1 | 20.00 | n/a | n/a | n/a | 62.31 | 12.21 | n/a |"
    assert lines[1].count("---") == 13



def test_results_table_shows_the_best_epoch():
    row = {"victim": "resnet18", "defense": "none", "protected_fraction": 1.0, "relabel": "original",
           "n_classes": 10, "seed": 0, "clean_acc": 0.8, "protected_acc": 0.1, "chance": 0.1,
           "protection_score": 0.0, "protected_acc_best": 0.45, "protection_score_best": 0.5, "best_epoch": 3}
    assert results_table([row]).splitlines()[2].endswith("| 10.00 | 45.00 | 0.500 | 3 | 80.00 | 10.00 | 0.000 |")


def test_worst_attacker_takes_the_largest_score_over_epochs_and_attackers():
    base = {"method": "UC", "victim": "resnet18", "defense": "none", "relabel": "minilm-kmeans"}
    rows = [{**base, "n_classes": 10, "protection_score": 0.1, "protection_score_best": 0.4},
            {**base, "n_classes": 5, "defense": "jpeg", "protection_score": 0.7, "protection_score_best": 0.5},
            {**base, "n_classes": 3, "protection_score": 0.95, "protection_score_best": 0.99},  # outside n = 4..10
            {**base, "n_classes": 10, "relabel": "pseudo-pixels-pca", "protection_score": 0.2,
             "protection_score_best": None},
            {**base, "method": "other", "n_classes": 10, "protection_score": 1.0, "protection_score_best": 1.0}]
    worst = worst_attacker(rows, "UC")
    assert worst["score"] == 0.7 and "jpeg" in worst["attacker"] and worst["n_rows"] == 3
    rows.append({**base, "victim": "simclr-resnet18", "n_classes": 10, "protection_score": 0.8,
                 "protection_score_best": None})
    assert worst_attacker(rows, "UC")["score"] == 0.8
    assert worst_attacker(rows, "missing") == {"score": None, "attacker": None, "n_rows": 0}
