"""The markdown table of evaluation rows (the plot and files are checked by test_evaluation's sweep)."""

from uc_datasets.evaluation.reporting import results_table


def test_results_table_format():
    row = {"victim": "resnet18", "defense": "mixup", "protected_fraction": 0.5, "relabel": "bert-kmeans",
           "n_classes": 5, "seed": 1, "clean_acc": 0.6231, "protected_acc": 0.1221, "chance": 0.2,
           "protection_score": None}
    lines = results_table([row]).splitlines()
    assert lines[2] == "| resnet18 | mixup | 0.5 | bert-kmeans | 5 | 1 | 62.31 | 12.21 | 20.00 | n/a | n/a | n/a |"
    assert lines[1].count("---") == 12



def test_results_table_shows_the_best_epoch():
    row = {"victim": "resnet18", "defense": "none", "protected_fraction": 1.0, "relabel": "original",
           "n_classes": 10, "seed": 0, "clean_acc": 0.8, "protected_acc": 0.1, "chance": 0.1,
           "protection_score": 0.0, "protected_acc_best": 0.45, "protection_score_best": 0.5}
    assert results_table([row]).splitlines()[2].endswith("| 0.000 | 45.00 | 0.500 |")
