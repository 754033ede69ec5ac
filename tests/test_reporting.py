"""The markdown table of evaluation rows (the plot and files are checked by test_evaluation's sweep)."""

from uc_datasets.reporting import results_table


def test_results_table_format():
    row = {"victim": "resnet18", "defense": "mixup", "protected_fraction": 0.5, "relabel": "bert-kmeans",
           "n_classes": 5, "seed": 1, "clean_acc": 0.6231, "protected_acc": 0.1221, "chance": 0.2,
           "protection_score": None}
    lines = results_table([row]).splitlines()
    assert lines[2] == "| resnet18 | mixup | 0.5 | bert-kmeans | 5 | 1 | 62.31 | 12.21 | 20.00 | n/a |"
    assert lines[1].count("---") == 10

