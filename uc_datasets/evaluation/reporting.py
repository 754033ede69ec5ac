"""Reporting of evaluation rows: the markdown table, the Figure 4a plot, the output files.

Example:
    >>> from uc_datasets.evaluation.reporting import write_outputs
    >>> write_outputs({"config": {}, "rows": rows}, "out")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IDENTITY_KEYS", "RESULTS_JSON", "RESULTS_PLOT", "RESULTS_TABLE", "ROW_KEYS", "clean_from_row",
           "markdown_table", "merge_results", "number", "percent", "plot_accuracy_vs_n", "result_row", "results_table",
           "worst_attacker", "write_json", "write_outputs"]

#: The keys of every results row (``results.json``'s ``rows``); scripts may add more.
ROW_KEYS = (
    "dataset",
    "method",
    "surrogate",
    "victim",
    "width",
    "epochs",
    "n_classes",
    "relabel",
    "defense",
    "protected_fraction",
    "seed",
    "clean_acc",
    "protected_acc",
    "chance",
    "protection_score",
    "clean_acc_best",
    "protected_acc_best",
    "protection_score_best",
    "best_epoch",
    "clean_best_epoch",
    "protected_acc_per_epoch",
    "clean_acc_per_epoch",
    # step-resolved curves (EvaluationConfig.evals_per_epoch / early_epochs; None when per epoch only):
    # the 1-based steps evaluated, the accuracy at each, the best point's step, and the best score
    # over the ends of epochs only (what a per-epoch evaluation reports)
    "eval_steps",
    "protected_acc_per_step",
    "clean_acc_per_step",
    "best_step",
    "clean_best_step",
    "protection_score_best_epoch_end",
)
RESULTS_JSON, RESULTS_TABLE, RESULTS_PLOT = "results.json", "results.md", "accuracy_vs_n.png"


#: The keys that name a row (everything before the accuracies).
IDENTITY_KEYS = ROW_KEYS[: ROW_KEYS.index("clean_acc")]


def result_row(*, clean: dict | None, scores: dict | None, **keys: object) -> dict:
    """One results row: the identity keys (``dataset`` ... ``seed``, all required) from ``keys``,
    the clean and the protected victim's accuracies and scores (``train_and_score`` results;
    None for a victim that failed), then the remaining ``keys`` as extra columns.

    Example:
        >>> ids = dict.fromkeys(IDENTITY_KEYS, 0)
        >>> row = result_row(clean={"accuracy": 0.8, "chance": 0.1}, scores=None, **ids, note="x")
        >>> row["clean_acc"], row["protected_acc"], row["chance"], list(row)[-1]
        (0.8, None, 0.1, 'note')
    """
    missing = [k for k in IDENTITY_KEYS if k not in keys]
    if missing:
        raise ValueError(f"a results row needs {missing}")
    row = {k: keys.pop(k) for k in IDENTITY_KEYS}
    row.update(
        clean_acc=clean["accuracy"] if clean else None,
        protected_acc=scores["accuracy"] if scores else None,
        chance=(scores or clean or {}).get("chance"),
        protection_score=scores["protection_score"] if scores else None,
        clean_acc_best=clean.get("accuracy_best") if clean else None,
        protected_acc_best=scores.get("accuracy_best") if scores else None,
        protection_score_best=scores.get("protection_score_best") if scores else None,
        best_epoch=scores.get("best_epoch") if scores else None,
        clean_best_epoch=clean.get("best_epoch") if clean else None,
        protected_acc_per_epoch=(scores or {}).get("accuracy_per_epoch"),
        clean_acc_per_epoch=(clean or {}).get("accuracy_per_epoch"),
        eval_steps=(scores or clean or {}).get("eval_steps"),
        protected_acc_per_step=(scores or {}).get("accuracy_per_step"),
        clean_acc_per_step=(clean or {}).get("accuracy_per_step"),
        best_step=(scores or {}).get("best_step"),
        clean_best_step=(clean or {}).get("best_step"),
        protection_score_best_epoch_end=(scores or {}).get("protection_score_best_epoch_end"),
    )
    row.update(keys)
    return row


def clean_from_row(row: Mapping[str, Any]) -> dict | None:
    """The clean victim's scores recorded in a row (what :func:`result_row` took as ``clean``; its
    inverse for the clean side), or
    None where the row has none (a failed clean victim, or a row of an older file without the
    best epoch).

    Example:
        >>> row = {"clean_acc": 0.8, "clean_acc_best": 0.81, "chance": 0.1, "clean_best_epoch": 3,
        ...        "clean_acc_per_epoch": [0.81]}
        >>> clean_from_row(row)["accuracy_best"]
        0.81
    """
    if row.get("clean_acc") is None or row.get("clean_acc_best") is None:
        return None
    clean = {"accuracy": row["clean_acc"], "accuracy_best": row["clean_acc_best"], "chance": row["chance"],
             "best_epoch": row.get("clean_best_epoch"), "accuracy_per_epoch": row.get("clean_acc_per_epoch")}
    if row.get("clean_acc_per_step") is not None:  # a step-resolved clean victim
        steps, curve = row["eval_steps"], row["clean_acc_per_step"]
        per_epoch = row.get("clean_acc_per_epoch") or []
        clean.update(eval_steps=steps, accuracy_per_step=curve, best_step=row.get("clean_best_step"),
                     accuracy_best_epoch_end=max(per_epoch) if per_epoch else row["clean_acc_best"])
    return clean


#: The supervised labellings the worst-attacker score covers (n classes).
WORST_N = range(4, 11)


def worst_attacker(rows: Iterable[dict], method: str, *, n_range: Iterable[int] = WORST_N) -> dict:
    """The strongest attack on ``method``: its largest protection score over every row, best and
    final epoch, among supervised labellings with ``n`` in ``n_range`` (any defence) and every
    pseudo-label and SimCLR row. Returns ``{"score", "attacker", "n_rows"}`` (score None without rows).

    Example:
        >>> rows = [{"method": "UC", "n_classes": 10, "relabel": "original", "defense": "none",
        ...          "protection_score": 0.2, "protection_score_best": 0.6},
        ...         {"method": "UC", "n_classes": 2, "relabel": "minilm-kmeans", "defense": "none",
        ...          "protection_score": 0.9, "protection_score_best": 0.9}]
        >>> worst_attacker(rows, "UC")["score"]
        0.6
    """
    ns = set(n_range)
    best, who, count = None, None, 0
    for r in rows:
        if r.get("method") != method:
            continue
        unsupervised = str(r.get("relabel", "")).startswith("pseudo") or str(r.get("victim", "")).startswith("simclr")
        if not unsupervised and r.get("n_classes") not in ns:
            continue
        count += 1
        for key, epoch in (("protection_score_best", "best"), ("protection_score", "final")):
            v = r.get(key)
            if v is not None and (best is None or v > best):
                best = float(v)
                who = (f"{r.get('victim', '')} {r.get('relabel', '')} n={r.get('n_classes')} "
                       f"defence={r.get('defense')} ({epoch} epoch)").strip()
    return {"score": best, "attacker": who, "n_rows": count}


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; ``n/a`` for None."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def number(value: float | None, spec: str = ".3f") -> str:
    """``format(value, spec)``; ``n/a`` for None."""
    return "n/a" if value is None else format(value, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table from a header and rows of cells (already formatted or plain values; None is empty).

    Example:
        >>> print(markdown_table(["a", "b"], [[1, None]]), end="")
        | a | b |
        | --- | --- |
        | 1 |  |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def results_table(rows: Sequence[dict]) -> str:
    """A markdown table of the rows (accuracies in %), one line per row: the best-epoch score (an
    attacker who stops early) first, the final-epoch score after it.

    Example:
        >>> row = dict.fromkeys(ROW_KEYS, 0); row.update(victim="resnet18", defense="none", relabel="original")
        >>> results_table([row]).splitlines()[0].startswith("| victim")
        True
    """
    header = ["victim", "defense", "protected fraction", "labels", "n", "seed", "chance (%)",
              "best-epoch protected acc (%)", "best-epoch score", "best epoch", "clean acc (%)", "protected acc (%)",
              "final score"]
    return markdown_table(header, [
        [row["victim"], row["defense"], f"{row['protected_fraction']:g}", row["relabel"], row["n_classes"], row["seed"],
         percent(row["chance"]), percent(row.get("protected_acc_best")), number(row.get("protection_score_best")),
         "n/a" if row.get("best_epoch") is None else row["best_epoch"],
         percent(row["clean_acc"]), percent(row["protected_acc"]), number(row["protection_score"])]
        for row in rows])


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    array = np.asarray(list(values), dtype=np.float64)
    return float(array.mean()), float(array.std()) if len(array) > 1 else 0.0


_ENCODER_TITLES = {"bert": "BERT", "minilm": "MiniLM"}


def _class_name_kmeans(rows: Sequence[dict]) -> str:
    """The ``relabel`` of the class-name K-means rows (``"<encoder>-kmeans"``; pseudo-labels excluded)."""
    return next((r["relabel"] for r in rows if r["relabel"].endswith("-kmeans")
                 and not r["relabel"].startswith("pseudo")), "bert-kmeans")


def plot_accuracy_vs_n(rows: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Figure 4a: test accuracy (%) against the number of classes n, per (victim, defence,
    fraction) panel, for clean training, protected training and majority-class chance.

    Class-name K-means labellings (BERT, MiniLM, ...: the encoder is named on the x axis) are lines (mean over seeds, std as error bars); the original
    labelling is a separate marker at n = C. Written as PNG with matplotlib's Agg canvas.

    Example:
        >>> plot_accuracy_vs_n(rows, "accuracy_vs_n.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("No rows to plot.")
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        panels[(row["victim"], row["defense"], row["protected_fraction"])].append(row)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure = Figure(figsize=(5.5 * ncols, 4.2 * nrows), constrained_layout=True)
    FigureCanvasAgg(figure)
    series = (("clean_acc", "clean training", "tab:blue"), ("protected_acc", "protected training", "tab:red"),
              ("chance", "chance (majority class)", "black"))
    for index, ((victim, defense, fraction), panel_rows) in enumerate(panels.items()):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        kmeans = _class_name_kmeans(panel_rows)
        has_kmeans = any(row["relabel"] == kmeans for row in panel_rows)
        for relabel in (kmeans, "original"):
            by_n: dict[int, list[dict]] = defaultdict(list)
            for row in panel_rows:
                if row["relabel"] == relabel:
                    by_n[row["n_classes"]].append(row)
            ns = sorted(by_n)
            for key, label, color in series:
                if not ns:
                    continue
                stats = [_mean_std(100 * r[key] for r in by_n[n]) for n in ns]
                style = (
                    dict(marker="o", markersize=4, linestyle="-", label=label)
                    if relabel == kmeans
                    else dict(marker="D", markersize=7, linestyle="none", markerfacecolor="none",
                              label=None if has_kmeans else label)
                )
                axes.errorbar(ns, [m for m, _ in stats], yerr=[s for _, s in stats], color=color, capsize=2, **style)
        if any(row["relabel"] == "original" for row in panel_rows):
            axes.plot([], [], marker="D", markerfacecolor="none", linestyle="none", color="gray",
                      label="original labels (n = C)")
        encoder = kmeans.removesuffix("-kmeans")
        axes.set_xlabel(f"number of classes n ({_ENCODER_TITLES.get(encoder, encoder)} + K-means relabelling)")
        axes.set_ylabel("clean test accuracy (%)")
        axes.set_ylim(0, 100)
        axes.set_title(f"{victim} | defence: {defense} | protected: {100 * fraction:g}%", fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120)
    return path


def write_outputs(results: dict, output_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``results.json``, ``results.md`` and ``accuracy_vs_n.png``; return their paths.

    Example:
        >>> paths = write_outputs({"config": {}, "rows": rows}, "out")  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows, config = results["rows"], results["config"]
    json_path = output_dir / RESULTS_JSON
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    heading = (
        f"# Unlearnability: {config.get('dataset', '')}, {config.get('method', '')} "
        f"(surrogate {config.get('surrogate', '')})\n\n"
        f"Victims trained for {config.get('epochs')} epochs at width {config.get('width')}; test accuracy on the "
        "clean test split, relabelled like the training labels. Chance is the majority-class rate; "
        "protection score = (protected - chance) / (clean - chance): 0 = nothing learned, 1 = no protection.\n\n"
    )
    table_path = output_dir / RESULTS_TABLE
    table_path.write_text(heading + results_table(rows))
    title = f"{config.get('dataset', '')}: {config.get('method', '')} ({config.get('surrogate', '')})"
    plot_path = plot_accuracy_vs_n(rows, output_dir / RESULTS_PLOT, title=title)
    return {"results_json": str(json_path), "table": str(table_path), "plot": str(plot_path)}



def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically (a partial file never replaces a good one);
    numpy scalars and arrays and paths are written as plain values.

    Example:
        >>> write_json("out/results.json", {"config": {}, "rows": []})  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def merge_results(parts: Sequence[dict], paths: Sequence[str], rename: dict[str, str] | None = None) -> dict:
    """One results file from runs of the same protocol with different seeds or methods (run in
    parallel processes): their rows, the union of their seeds and fits, and ``merged_from`` (the
    sources, kept from an input that is itself a merge). ``rename`` maps method names of the
    inputs to the names of the output (rows and fits), all at once, so ``{"a": "b", "b": "a"}``
    swaps two names. The first part's ``config`` is the base; the parts are not modified.

    Example:
        >>> a = {"config": {"command": "x", "seeds": [0], "status": "complete"}, "rows": [{"method": "m"}]}
        >>> b = {"config": {"command": "y", "seeds": [1], "status": "partial"}, "rows": [{"method": "m"}]}
        >>> m = merge_results([a, b], ["a.json", "b.json"], {"m": "n"})
        >>> m["config"]["seeds"], m["config"]["status"], [r["method"] for r in m["rows"]]
        ([0, 1], 'partial', ['n', 'n'])
    """
    import copy

    rename = dict(rename or {})
    merged = copy.deepcopy(dict(parts[0]))
    config = merged["config"]
    config["merged_from"] = [
        source for path, part in zip(paths, parts)
        for source in part["config"].get("merged_from") or [
            {"path": str(path), "command": part["config"]["command"], "seeds": part["config"]["seeds"],
             "status": part["config"]["status"], "total_seconds": part.get("timings", {}).get("total_seconds")}]]
    config["seeds"] = sorted({s for part in parts for s in part["config"]["seeds"]})
    config["status"] = "complete" if all(p["config"]["status"] == "complete" for p in parts) else "partial"
    merged["rows"] = [{**r, "method": rename.get(r["method"], r["method"])} for part in parts for r in part["rows"]]
    if rename:
        config["renamed_methods"] = {**config.get("renamed_methods", {}), **rename}
    fits = config.get("fits", {})
    for part in parts[1:]:
        for seed, seed_fits in part["config"].get("fits", {}).items():  # runs of other methods for one seed add up
            fits.setdefault(seed, {}).update(seed_fits)
        if not merged.get("cluster_agreement"):
            merged["cluster_agreement"] = part.get("cluster_agreement", [])
    if fits or "fits" in config:
        config["fits"] = {seed: {rename.get(m, m): rec for m, rec in seed_fits.items()}
                          for seed, seed_fits in fits.items()}
    return merged
