"""Markdown tables of comparison rows (``comparison.sweep``): Table 1's pivot, the attackers,
the final run's summary, screens and key agreement. Cells read the best-epoch score first
(an attacker who stops early), the final-epoch score after it.

Example:
    >>> from uc_datasets.evaluation.tables import pivot_markdown
    >>> print(pivot_markdown(saved["rows"]))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .reporting import markdown_table, number, percent, worst_attacker

__all__ = ["agreement_markdown", "attack_screen_markdown", "attacker_label", "attacker_name", "attackers_markdown",
           "final_markdown", "pivot_markdown", "results_markdown"]


def attacker_label(defense: str, n_classes: int) -> str:
    """``labels n=N`` without a defence, ``<defence> n=N`` with one."""
    return f"labels n={n_classes}" if defense == "none" else f"{defense} n={n_classes}"


def attacker_name(row: dict) -> str:
    """The attacker of a row: its ``attacker`` (pseudo-labels, SimCLR), else :func:`attacker_label`.

    Example:
        >>> attacker_name({"defense": "jpeg", "n_classes": 10})
        'jpeg n=10'
    """
    return row["attacker"] if row.get("attacker") else attacker_label(row["defense"], row["n_classes"])


def _mean_cell(values: Sequence[float | None], spread: bool = False) -> str:
    """Mean of the values that exist (``n/a`` without any), with ``[min, max]`` if ``spread``."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.2f}" + (f" [{min(vals):.2f}, {max(vals):.2f}]" if spread and len(vals) > 1 else "")


def results_markdown(rows: Sequence[dict], *, variant_key: str | None = None) -> str:
    """One line per row: defence, labels, method (or variant), agreement, accuracies, score;
    with ``variant_key`` also the fit's attack success and seconds."""
    head = ["defense", "labels", "n", variant_key or "method", "p", "NMI", "rule acc %", "clean %", "protected %",
            "chance %", "score"] + (["attack success %", "fit s"] if variant_key else [])
    body = []
    for r in rows:
        line = [r["defense"], r["relabel"], r["n_classes"], r[variant_key] if variant_key else r["method"],
                r.get("p", ""), number(r.get("nmi")), percent(r.get("cluster_rule_acc"), 1),
                percent(r["clean_acc"], 1), percent(r["protected_acc"], 1), percent(r["chance"], 1),
                number(r["protection_score"], ".2f") + (" (error)" if r.get("error") else "")]
        if variant_key:
            line += [percent(r.get("attack_success"), 1), number(r.get("fit_seconds"), ".0f")]
        body.append(line)
    return markdown_table(head, body)


def pivot_markdown(rows: Sequence[dict], *, key: str = "method", defense: str = "none") -> str:
    """Table 1 layout: one line per method (or ``key``), one column per labelling (n, largest
    first); each cell ``best-epoch score / final score (best-epoch accuracy % / final %)``, with
    the clean accuracies (best / final) as first line.

    Example:
        >>> r = {"method": "UC", "defense": "none", "n_classes": 10, "clean_acc": 0.8, "protected_acc": 0.1,
        ...      "protection_score": 0.0, "chance": 0.1, "clean_acc_best": 0.82}
        >>> pivot_markdown([r]).splitlines()[2]
        '| clean | 82.0 / 80.0 |'
    """
    rows = [r for r in rows if r["defense"] == defense]
    ns = sorted({r["n_classes"] for r in rows}, reverse=True)
    names = list(dict.fromkeys(r[key] for r in rows))
    cell = {(r[key], r["n_classes"]): (f"{number(r.get('protection_score_best'), '.2f')} / "
                                       f"{number(r['protection_score'], '.2f')} "
                                       f"({percent(r.get('protected_acc_best'), 1)} / "
                                       f"{percent(r['protected_acc'], 1)})")
            for r in rows}
    clean = {r["n_classes"]: f"{percent(r.get('clean_acc_best'), 1)} / {percent(r['clean_acc'], 1)}" for r in rows}
    chance = {r["n_classes"]: percent(r["chance"], 1) for r in rows}
    body = [["clean"] + [clean[n] for n in ns], ["chance"] + [chance[n] for n in ns]]
    body += [[name] + [cell.get((name, n), "") for n in ns] for name in names]
    return markdown_table([f"{key} \\ n"] + [str(n) for n in ns], body)


def agreement_markdown(entries: Sequence[dict]) -> str:
    """NMI / rule accuracy of K-means clusters (rows: p) against every labelling (columns: n)."""
    ns = sorted({e["n_classes"] for e in entries}, reverse=True)
    ps = sorted({e["p"] for e in entries})
    cell = {(e["p"], e["n_classes"]): f"{e['nmi']:.2f} / {100 * e['cluster_rule_acc']:.0f}%" for e in entries}
    return markdown_table(["p \\ n (NMI / rule acc)"] + [str(n) for n in ns],
                          [[p] + [cell.get((p, n), "") for n in ns] for p in ps])


def attackers_markdown(rows: Sequence[dict]) -> str:
    """Methods (lines) against attackers (columns): mean protection score over seeds [min, max];
    supervised labellings as their best epoch first, then the final epoch; the last column is
    the worst attacker (``reporting.worst_attacker``: the largest score over best and final
    epoch, n = 4..10, defences, pseudo-labels and SimCLR), per seed."""
    columns: dict[str, list] = {}
    # every labelling first, from n = 10 down (runs that filled cells later append theirs)
    for r in sorted(rows, key=lambda r: (0, -r["n_classes"]) if attacker_name(r).startswith("labels ") else (1, 0)):
        name = attacker_name(r)
        if r.get("protected_acc_best") is not None:  # the early-stopping attacker first
            columns.setdefault(f"{name} (best epoch)", []).append((r["method"], r.get("protection_score_best")))
        columns.setdefault(name, []).append((r["method"], r["protection_score"]))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    columns["worst attacker"] = [(m, worst_attacker([r for r in rows if r["seed"] == s], m)["score"])
                                 for m in methods for s in seeds]
    body = [[m] + [_mean_cell([v for mm, v in columns[c] if mm == m], spread=True) for c in columns] for m in methods]
    return markdown_table(["method \\ attacker"] + list(columns), body)


def final_markdown(rows: Sequence[dict]) -> str:
    """Per method: the best-epoch score (mean of seeds) at every n, the final-epoch score beside
    it, the worst n in 4..10, the worst attacker and the visual cost (PSNR, SSIM)."""
    plain = [r for r in rows if r["defense"] == "none" and not r.get("attacker")]
    ns = sorted({r["n_classes"] for r in plain}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    body = []
    for m in methods:
        mine = [r for r in plain if r["method"] == m]
        cells = [f"{_mean_cell([r['protection_score_best'] for r in mine if r['n_classes'] == n])} "
                 f"({_mean_cell([r['protection_score'] for r in mine if r['n_classes'] == n])})" for n in ns]
        in_range = [r for r in mine if 4 <= r["n_classes"] <= 10]
        seeds = sorted({r["seed"] for r in in_range})
        worst_n = max((np.mean([r["protection_score_best"] for r in in_range if r["n_classes"] == n
                                and r["protection_score_best"] is not None] or [np.nan]) for n in
                       sorted({r["n_classes"] for r in in_range})), default=float("nan"))
        worst = _mean_cell([worst_attacker([r for r in rows if r["seed"] == s], m)["score"] for s in seeds])
        vis = next((r for r in mine if r.get("psnr_db") is not None), {})
        body.append([m, *cells, f"{worst_n:.2f}", worst, number(vis.get("psnr_db"), ".2f"),
                     number(vis.get("ssim"), ".3f")])
    return markdown_table(["method \\ n: best (final)", *map(str, ns), "worst n=4..10 (best)", "worst attacker",
                           "PSNR dB", "SSIM"], body)


def attack_screen_markdown(rows: Sequence[dict]) -> str:
    """Variant x attacker: best-epoch score / final-epoch score (SimCLR: the probe's score)."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    attackers = list(dict.fromkeys(attacker_name(r) for r in rows))
    cell = {(r["variant"], attacker_name(r)): r for r in rows}

    def fmt(r: dict | None) -> str:
        if r is None:
            return ""
        if r.get("protection_score") is None:
            return "failed"
        best = r.get("protection_score_best")
        return f"{r['protection_score']:.2f}" if best is None else f"{best:.2f} / {r['protection_score']:.2f}"

    body = []
    for v in variants:
        any_row = next(r for r in rows if r["variant"] == v)
        body.append([v, *(fmt(cell.get((v, a))) for a in attackers),
                     f"{any_row.get('psnr_db', float('nan')):.2f}", f"{any_row.get('ssim', float('nan')):.3f}"])
    return markdown_table(["variant", *attackers, "PSNR dB", "SSIM"], body)
