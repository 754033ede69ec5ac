"""The comparison's markdown tables read the best epoch first and aggregate seeds as documented."""

from __future__ import annotations

from uc_datasets.evaluation.tables import (
    attack_screen_markdown,
    attacker_name,
    attackers_markdown,
    final_markdown,
    pivot_markdown,
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
