"""The comparison's markdown tables read the best epoch first and aggregate seeds as documented."""

from __future__ import annotations

from uc_datasets.evaluation.tables import (
    agreement_markdown,
    attack_screen_markdown,
    attacker_label,
    attacker_name,
    attackers_markdown,
    final_markdown,
    pivot_markdown,
    results_markdown,
)


def row(method: str, n: int, seed: int, best: float | None, final: float | None, **extra) -> dict:
    return {"method": method, "defense": "none", "n_classes": n, "relabel": "original" if n == 10 else "minilm-kmeans",
            "seed": seed, "clean_acc": 0.8, "clean_acc_best": 0.82, "chance": 1 / n, "protected_acc": 0.3,
            "protected_acc_best": 0.5, "protection_score": final, "protection_score_best": best, **extra}


def test_attacker_name_reads_the_defence_or_the_attacker():
    assert attacker_name(row("UC", 10, 0, 0.5, 0.2)) == "labels n=10"
    assert attacker_name(row("UC", 5, 0, 0.5, 0.2, defense="jpeg")) == "jpeg n=5"
    assert attacker_name(row("UC", 3, 0, 0.5, 0.2, attacker="pseudo-labels n=3")) == "pseudo-labels n=3"


def test_pivot_columns_go_from_the_most_classes_down_with_best_then_final():
    lines = pivot_markdown([row("UC", 5, 0, 0.6, 0.1), row("UC", 10, 0, 0.5, 0.2)]).splitlines()
    assert lines[0] == "| method \\ n | 10 | 5 |"
    assert lines[4] == "| UC | 0.50 / 0.20 (50.0 / 30.0) | 0.60 / 0.10 (50.0 / 30.0) |"


def test_attackers_table_means_seeds_with_their_spread_and_the_worst_attacker():
    rows = [row("UC", 10, 0, 0.4, 0.1), row("UC", 10, 1, 0.6, 0.3), row("UC", 2, 0, 0.99, 0.99),
            row("UC", 10, 0, 0.7, 0.9, defense="jpeg"), row("UC", 10, 1, 0.2, 0.2, defense="jpeg")]
    header, _, body = attackers_markdown(rows).splitlines()[:3]
    cols = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(cols, (c.strip() for c in body.strip("|").split("|"))))
    assert cols.index("labels n=10 (best epoch)") < cols.index("labels n=10") < cols.index("labels n=2 (best epoch)")
    assert cells["labels n=10 (best epoch)"] == "0.50 [0.40, 0.60]"
    assert cells["labels n=10"] == "0.20 [0.10, 0.30]"
    # worst attacker per seed over n = 4..10 (n = 2 is left out), best and final epoch: 0.9 and 0.6
    assert cells["worst attacker"] == "0.75 [0.60, 0.90]"


def test_final_table_says_n_a_where_nothing_was_measured():
    rows = [row("UC", 10, 0, 0.5, 0.2, psnr_db=30.0, ssim=0.9), row("EMinN", 10, 0, None, None)]
    lines = final_markdown(rows).splitlines()
    assert lines[2].startswith("| UC | 0.50 (0.20) | 0.50 |") and "30.00 | 0.900 |" in lines[2]
    assert lines[3].startswith("| EMinN | n/a (n/a) |") and lines[3].endswith("n/a | n/a |")


def test_attack_screen_marks_a_failed_victim():
    rows = [{**row("UC", 10, 0, 0.5, 0.2), "variant": "tile", "psnr_db": 31.0, "ssim": 0.95},
            {**row("UC", 10, 0, None, None, defense="jpeg"), "variant": "tile", "psnr_db": 31.0, "ssim": 0.95}]
    line = attack_screen_markdown(rows).splitlines()[2]
    assert line == "| tile | 0.50 / 0.20 | failed | 31.00 | 0.950 |"


def plain_row(method: str, n: int, **extra) -> dict:
    return {"method": method, "defense": "none", "n_classes": n, "relabel": "original", "seed": 0, "clean_acc": 0.8,
            "clean_acc_best": 0.82, "chance": 1 / n, "protected_acc": 0.3, "protected_acc_best": 0.5,
            "protection_score": 0.2, "protection_score_best": 0.5, **extra}


def test_attacker_label_names_labels_or_the_defence():
    assert attacker_label("none", 10) == "labels n=10"
    assert attacker_label("jpeg", 4) == "jpeg n=4"


def test_results_lines_format_percentages_and_mark_errors():
    lines = results_markdown([plain_row("UC", 10, nmi=0.5, cluster_rule_acc=0.75, p=3),
                              plain_row("UC", 5, error="oom")])
    assert lines.splitlines()[0].startswith("| defense | labels | n | method | p | NMI |")
    assert lines.splitlines()[2] == "| none | original | 10 | UC | 3 | 0.500 | 75.0 | 80.0 | 30.0 | 10.0 | 0.20 |"
    assert lines.splitlines()[3].endswith("| 20.0 | 0.20 (error) |") and "| n/a | n/a |" in lines.splitlines()[3]


def test_results_with_a_variant_key_add_attack_success_and_seconds():
    lines = results_markdown([plain_row("UC", 10, variant="tile", attack_success=0.9, fit_seconds=12.4)],
                             variant_key="variant").splitlines()
    assert lines[0].endswith("| score | attack success % | fit s |") and "| variant |" in lines[0]
    assert lines[2] == "| none | original | 10 | tile |  | n/a | n/a | 80.0 | 30.0 | 10.0 | 0.20 | 90.0 | 12 |"


def test_pivot_has_clean_and_chance_lines_and_keeps_to_one_defence():
    table = pivot_markdown([plain_row("UC", 10), plain_row("UC", 5), plain_row("EMinN", 10),
                            plain_row("UC", 10, defense="jpeg")])
    lines = table.splitlines()
    assert lines[2] == "| clean | 82.0 / 80.0 | 82.0 / 80.0 |"
    assert lines[3] == "| chance | 10.0 | 20.0 |"
    assert lines[5] == "| EMinN | 0.50 / 0.20 (50.0 / 30.0) |  |"  # a missing labelling is an empty cell
    assert len(lines) == 6


def test_agreement_puts_p_down_and_n_across():
    lines = agreement_markdown([{"p": 2, "n_classes": 5, "nmi": 0.3, "cluster_rule_acc": 0.6},
                                {"p": 1, "n_classes": 10, "nmi": 0.91, "cluster_rule_acc": 0.876}]).splitlines()
    assert lines[0] == "| p \\ n (NMI / rule acc) | 10 | 5 |"
    assert lines[2:] == ["| 1 | 0.91 / 88% |  |", "| 2 |  | 0.30 / 60% |"]
