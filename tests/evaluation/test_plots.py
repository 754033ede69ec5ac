"""The comparison's plots write real PNG files from rows of several seeds and methods."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from uc_datasets.evaluation.plots import frontier_points, plot_epochs, plot_frontier, plot_scores

PNG = b"\x89PNG\r\n\x1a\n"


def rows() -> list[dict]:
    out = []
    for seed in (0, 1):
        for method in ("UC", "UC (label-aware)"):
            for n in (10, 5):
                out.append({"method": method, "defense": "none", "n_classes": n, "seed": seed, "chance": 1 / n,
                            "protection_score": 0.2 + 0.1 * seed, "protection_score_best": 0.5 + 0.1 * seed,
                            "protected_acc_per_epoch": [0.2, 0.4, 0.3], "clean_acc_per_epoch": [0.5, 0.7, 0.8]})
    return out


def test_score_plots_are_png(tmp_path):
    for score in ("protection_score", "protection_score_best"):
        path = plot_scores(rows(), tmp_path / f"{score}.png", score=score)
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


def test_epoch_plot_is_png(tmp_path):
    path = plot_epochs(rows(), tmp_path / "epochs.png", n=10)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


def spy_titles(monkeypatch) -> list[str]:
    titles: list[str] = []
    save = Figure.savefig

    def savefig(self, *args, **kwargs):
        titles.append(self.axes[0].get_title())
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return titles


def test_default_titles_name_no_dataset(tmp_path, monkeypatch):
    titles = spy_titles(monkeypatch)
    assert plot_scores(rows(), tmp_path / "s.png") == tmp_path / "s.png"
    assert plot_epochs(rows(), tmp_path / "e.png", n=5) == tmp_path / "e.png"
    assert titles == ["defence: none", "n = 5: test accuracy during training"]
    assert not any("MNIST" in t for t in titles)
    plot_scores(rows(), tmp_path / "t.png", title="custom")
    assert titles[-1] == "custom"


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_plots_without_matching_rows_are_still_png(tmp_path):
    for path in (plot_scores(rows(), tmp_path / "s.png", defense="jpeg"), plot_epochs(rows(), tmp_path / "e.png", n=3)):
        assert path.read_bytes().startswith(PNG)


def frontier_rows() -> list[dict]:
    out = []
    for family, base in (("block", 0.7), ("class-mean", 0.5)):
        for eps, psnr in ((8, 31.0), (16, 25.0)):
            for seed in (0, 1, 2):
                out.append({"method": f"{family} @ {eps}/255", "epsilon_levels": eps, "psnr_db": psnr + 0.1 * seed,
                            "ssim": 0.9, "protection_score_best": base - eps / 100 + 0.01 * seed,
                            "protection_score": base / 2, "seed": seed})
    out.append({"method": "clean", "psnr_db": None, "epsilon_levels": None, "seed": 0})
    return out


def test_frontier_points_average_seeds_per_family_and_epsilon():
    points = frontier_points(frontier_rows())
    assert list(points) == ["block", "class-mean"]
    first = points["class-mean"][1]
    assert first["epsilon_levels"] == 16 and first["seeds"] == 3
    assert first["best"] == pytest.approx(0.5 - 0.16 + 0.01) and first["psnr_db"] == pytest.approx(25.1)
    assert [p["epsilon_levels"] for p in points["block"]] == [8, 16]


def test_frontier_plot_is_png(tmp_path):
    data = plot_frontier(frontier_rows(), tmp_path / "frontier.png").read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
