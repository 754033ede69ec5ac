"""Plots of comparison rows (``comparison.sweep``): protection score against the number of
classes, the victims' test accuracy against their epoch, and protection against visibility (the
epsilon frontier). PNG through matplotlib's Agg canvas.

Example:
    >>> from uc_datasets.evaluation.plots import plot_scores
    >>> plot_scores(saved["rows"], "scores_vs_n.png", score="protection_score_best")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["frontier_points", "plot_epochs", "plot_frontier", "plot_scores"]


def plot_scores(rows: Sequence[dict], path: str | os.PathLike, *, key: str = "method", defense: str = "none",
                title: str = "", score: str = "protection_score") -> Path:
    """Protection score (``score``: ``protection_score`` or ``protection_score_best``) against the
    number of classes n, one line per ``key`` (method or variant): mean over seeds with min-max
    bars. 1 = the clean victim's ability, 0 = chance.

    Example:
        >>> plot_scores(saved["rows"], "scores_vs_n.png")  # doctest: +SKIP
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["defense"] == defense and not r.get("attacker") and r.get(score) is not None:
            series[r[key]][r["n_classes"]].append(r[score])
    fig = Figure(figsize=(11, 5.0), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ns_all = sorted({n for by_n in series.values() for n in by_n})
    ax.plot(ns_all, [1.0] * len(ns_all), color="grey", linestyle=":", label="clean training (1 by definition)")
    colors = matplotlib.colormaps["tab10"].colors
    drawn = 0  # one colour per line; label-free solid, label-aware dashed
    for name, by_n in series.items():
        ns = sorted(by_n)
        if len(ns) < 2:  # controls run at one labelling only are tables, not lines
            continue
        mean = [sum(by_n[n]) / len(by_n[n]) for n in ns]
        lo = [m - min(by_n[n]) for m, n in zip(mean, ns)]
        hi = [max(by_n[n]) - m for m, n in zip(mean, ns)]
        seeds = max(len(v) for v in by_n.values())
        aware = "label-aware" in name
        color = colors[drawn % 10]
        drawn += 1
        ax.errorbar(ns, mean, yerr=[lo, hi], marker="o", markersize=4, capsize=3, color=color,
                    linestyle="--" if aware else "-",
                    label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("number of classes n the victim trains on (10 = original labels)")
    ax.set_ylabel(("best-epoch " if score.endswith("_best") else "final-epoch ")
                  + "protection score (0 = chance, 1 = no protection)")
    ax.set_xticks(ns_all)
    ax.set_title(title or f"defence: {defense}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(str(path), dpi=110)
    return Path(path)


def plot_epochs(rows: Sequence[dict], path: str | os.PathLike, *, n: int = 10, title: str = "") -> Path:
    """Test accuracy against the victim's epoch at ``n`` classes (no defence): the clean victim and
    each method's victim, mean over seeds; where the protected curve peaks is what an early-stopping
    hacker keeps.

    Example:
        >>> plot_epochs(saved["rows"], "accuracy_vs_epoch.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen = [r for r in rows if r["defense"] == "none" and not r.get("attacker") and r["n_classes"] == n
              and r.get("protected_acc_per_epoch")]
    fig = Figure(figsize=(9, 4.8), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cleans = {r["seed"]: r["clean_acc_per_epoch"] for r in chosen if r.get("clean_acc_per_epoch")}
    if cleans:
        curve = 100 * np.mean(list(cleans.values()), axis=0)
        ax.plot(range(1, len(curve) + 1), curve, color="black", linewidth=2, label=f"clean ({len(cleans)} seeds)")
    for method in dict.fromkeys(r["method"] for r in chosen):
        curves = [r["protected_acc_per_epoch"] for r in chosen if r["method"] == method]
        curve = 100 * np.mean(curves, axis=0)
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3,
                linestyle="--" if "label-aware" in method else "-", label=f"{method} ({len(curves)} seeds)")
    if chosen:
        ax.axhline(100 * chosen[0]["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("victim epoch")
    ax.set_ylabel(f"clean test accuracy % (n = {n})")
    ax.set_title(title or f"n = {n}: test accuracy during training")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(str(path), dpi=110)
    return Path(path)


def frontier_points(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """The epsilon frontier of rows named ``"<family> @ <eps>/255"`` that carry ``epsilon_levels``
    and ``psnr_db``: per family, one point per epsilon (ascending) with the means over seeds of the
    PSNR, SSIM, best-point and final score.

    Example:
        >>> rows = [{"method": "block @ 8/255", "epsilon_levels": 8, "psnr_db": 31.0, "ssim": 0.9,
        ...          "protection_score_best": 0.7, "protection_score": 0.3, "seed": s} for s in (0, 1)]
        >>> frontier_points(rows)["block"][0]["best"], frontier_points(rows)["block"][0]["seeds"]
        (0.7, 2)
    """
    grouped: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("epsilon_levels") is None or r.get("psnr_db") is None or r.get("attacker"):
            continue
        family = r["method"].rpartition(" @ ")[0] or r["method"]
        grouped[family][int(r["epsilon_levels"])].append(r)

    def mean(mine: list[dict], key: str) -> float | None:
        values = [r[key] for r in mine if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    return {family: [{"epsilon_levels": eps, "psnr_db": mean(mine, "psnr_db"), "ssim": mean(mine, "ssim"),
                      "best": mean(mine, "protection_score_best"), "final": mean(mine, "protection_score"),
                      "seeds": len(mine)} for eps, mine in sorted(by_eps.items())]
            for family, by_eps in grouped.items()}


def plot_frontier(rows: Sequence[dict], path: str | os.PathLike, *, title: str = "") -> Path:
    """Protection score against PSNR, one family per colour: best point (solid) and final epoch
    (dashed), each point labelled with its epsilon in levels. Lower and further right is better
    (less learnt, less visible).

    Example:
        >>> plot_frontier(saved["rows"], "frontier.png")  # doctest: +SKIP
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.0), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = matplotlib.colormaps["tab10"].colors
    for i, (family, points) in enumerate(frontier_points(rows).items()):
        psnr = [p["psnr_db"] for p in points]
        seeds = max(p["seeds"] for p in points)
        for score, style in (("best", "-"), ("final", "--")):
            ax.plot(psnr, [p[score] for p in points], marker="o", markersize=4, linestyle=style, color=colors[i % 10],
                    label=f"{family}: {'best point' if score == 'best' else 'final epoch'} ({seeds} seeds)")
        for p in points:
            ax.annotate(f"{p['epsilon_levels']}", (p["psnr_db"], p["best"]), textcoords="offset points",
                        xytext=(3, 4), fontsize=7, color=colors[i % 10])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("PSNR of the protected images, dB (higher = less visible); labels: epsilon in levels of 255")
    ax.set_ylabel("protection score (0 = chance, 1 = no protection)")
    ax.set_title(title or "protection against visibility")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(str(path), dpi=110)
    return Path(path)
