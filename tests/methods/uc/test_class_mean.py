"""The class-mean family (feature-aligned keys) and the unrolled family, on sets where the answer is known."""

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uc_datasets import UnlearnableClusters
from uc_datasets.methods.uc.config import UCConfig
from uc_datasets.methods.uc.families.class_mean import ClassMean, key_means

EPS = 20 / 255


def _templates(n_per_class: int, seed: int, amplitude: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of 16x16 grey images: mid-grey noise plus a faint bright quadrant per class.
    The quadrant is the only feature, and a fresh model learns it in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    x = 0.5 + 0.05 * rng.standard_normal((len(labels), 16, 16))
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        x[i, 8 * r : 8 * r + 8, 8 * q : 8 * q + 8] += amplitude
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8), labels


def _dataset(images: np.ndarray, labels: np.ndarray) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"image": [Image.fromarray(a, "L") for a in images],
                                       "label": labels.tolist()}).cast_column("image", datasets.Image())


def _early_accuracy(train: np.ndarray, labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray, *,
                    seed: int, steps: int = 80) -> float:
    """Clean test accuracy of a fresh small CNN after ``steps`` SGD steps (batch 32) on ``train``."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.from_numpy(train).float()[:, None] / 255 - 0.5
    y = torch.from_numpy(labels).long()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(torch.from_numpy(test).float()[:, None] / 255 - 0.5).argmax(1).numpy()
    return float((pred == test_labels).mean())


def _protected(pattern: str, ds: datasets.Dataset) -> np.ndarray:
    prot = UnlearnableClusters(pattern=pattern, epsilon=EPS, progress=False).fit(ds, label_column="label")
    return np.stack([np.asarray(im) for im in ds.map(prot, batched=True, load_from_cache_file=False)["image"]])


def test_feature_aligned_keys_lower_early_accuracy_more_than_block_keys():
    """The one feature is a faint quadrant of +0.08. Block keys at the same budget leave it in the
    images, so a fresh model learns it in its first steps; the class-mean keys spend the budget
    against it (each class's quadrant is darkened and the others brightened), so the features
    the early model learns point the wrong way on clean images."""
    train, labels = _templates(100, seed=0)
    test, test_labels = _templates(50, seed=1)
    ds = _dataset(train, labels)
    clean = np.mean([_early_accuracy(train, labels, test, test_labels, seed=s) for s in range(3)])
    block = np.mean([_early_accuracy(_protected("block", ds), labels, test, test_labels, seed=s) for s in range(3)])
    mean = np.mean([_early_accuracy(_protected("class-mean", ds), labels, test, test_labels, seed=s)
                    for s in range(3)])
    assert clean > 0.9  # the quadrant is learnt within 80 steps (1.00 when written)
    assert block > 0.7  # the block keys leave it in the images (0.86)
    assert mean < 0.2 and mean < block - 0.5, (clean, block, mean)  # (0.00: the early model learns it reversed)


def test_key_means_and_the_three_targets():
    x = torch.tensor([0, 0, 100, 255], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 1, 1)
    means = key_means(x, np.array([0, 0, 1, 2]), 3, channels=1)
    assert torch.allclose(means.flatten(), torch.tensor([0.0, 100 / 255, 1.0]), atol=1e-6)
    away = ClassMean(UCConfig(pattern="class-mean")).directions(means)
    assert torch.sign(away).flatten().tolist() == [1.0, 1.0, -1.0]  # each key pushed toward the mean of all
    nearest = ClassMean(UCConfig(pattern="class-mean", options={"target": "nearest"})).directions(means)
    assert torch.sign(nearest).flatten().tolist() == [1.0, -1.0, -1.0]  # 0 -> 1, 1 -> 0, 2 -> 1
    der = ClassMean(UCConfig(pattern="class-mean", options={"target": "derangement"})).directions(means)
    assert not torch.equal(der, torch.zeros_like(der))


def test_the_unrolled_crafting_raises_the_held_out_loss_it_optimises():
    """A few rounds against the same set: the held-out loss of fresh models after the unrolled
    steps goes up (it is what the noise ascends), and the noise stays in the budget."""
    from uc_datasets.methods.uc.unrolled_noise import UnrolledConfig, craft_unrolled_noise

    train, labels = _templates(40, seed=0)
    x = torch.from_numpy(train)[:, None].expand(-1, 3, -1, -1).contiguous()
    cfg = UnrolledConfig(rounds=40, horizon=16, batch_size=32, val_batch_size=64, width=8, lr=0.2)
    deltas, curve = craft_unrolled_noise(x, torch.ones(len(x), dtype=torch.bool), torch.from_numpy(labels), [],
                                         EPS, cfg, seed=0, progress=False)
    assert deltas.shape == (4, 3, 16, 16) and float(deltas.abs().max()) <= EPS + 1e-7
    assert np.mean(curve[-10:]) > np.mean(curve[:10]) + 0.1, curve  # 1.59 -> 1.78 when written (seeds 1, 2: +0.17)
    with pytest.raises(ValueError, match="unknown options"):
        UCConfig(pattern="unrolled", options={"steps": 3})
