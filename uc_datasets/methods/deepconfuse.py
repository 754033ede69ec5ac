"""DeepConfuse (Feng, Cai and Zhou, "Learning to Confuse", NeurIPS 2019): a trained auto-encoder's noise.

An auto-encoder ``g`` maps each image to a perturbation ``epsilon * tanh(.)``. It is trained
so that a classifier ``f`` *trained on* ``x + g(x)`` does badly on the clean images ``x``.
``g`` cannot see the end of ``f``'s training, so it learns from ``f``'s trajectory, one SGD
step at a time: at each training step of ``f`` (weights ``theta``) on a batch ``(x, y)``,

1. **pseudo-update**: ``theta' = theta - lr * grad_theta CE(f_theta(x + g(x)), y)``, kept
   differentiable with respect to ``g``'s weights (a second-order gradient);
2. ``g`` takes one Adam step that *maximises* ``CE(f_theta'(x), y)``: the clean loss of the
   classifier one step after it has seen ``g``'s data;
3. ``f`` takes its real SGD step on ``x + g_frozen(x)``, where ``g_frozen`` is ``g`` as it was
   at the start of the trial: the trajectory ``g`` learns from is that of a classifier
   trained on the previous trial's poison.

One **trial** trains a fresh classifier for ``classifier_epochs`` epochs this way; at its end
``g_frozen <- g``. After ``trials`` trials every image gets ``epsilon * g(x)`` (eval mode),
stored per image like EMaxN's noise. The reference interleaves the trajectory "memory" with
the classifier's training (the classifier's weights at each step *are* the remembered
trajectory point) instead of storing and replaying it; we do the same.

Settings (:class:`DeepConfuseConfig`), against the public reference code
(github.com/kingfengji/DeepConfuse: ``MNIST/train.py``, ``CIFAR/train.py``, ``ImageNet/train_binary.py``):

| setting | here (default) | reference |
| --- | --- | --- |
| perturbation bound | ``epsilon * tanh``, eps 16/255 (the UC paper's Table 1) | ``eps * tanh``; eps 0.3 MNIST, 0.032 CIFAR, 0.1 ImageNet |
| auto-encoder | 4 stride-2 4x4 convs (16-32-64-128 channels, BN, ReLU), 4 transposed convs back, tanh; input padded to a multiple of 16 | the same for ImageNet; a U-Net for CIFAR (not in the copy read); a small conv AE for MNIST |
| generator optimiser | Adam, lr 1e-4 | Adam 1e-4 (MNIST, CIFAR); 1e-3 with amsgrad (ImageNet) |
| classifier | ResNet-18 (the paper's victims; ``model_width``) | LeNet-style CNN (MNIST), VGG-11 (CIFAR), small VGG (ImageNet) |
| classifier optimiser, pseudo-update step | plain SGD, lr 0.01, no augmentation | plain SGD, lr 0.01 (the momentum argument is unused), no augmentation |
| batch size | 256 | 64 MNIST, 256 CIFAR, 32 ImageNet |
| classifier epochs per trial | 20 | 1 MNIST, 20 CIFAR, 5 ImageNet |
| trials | 20 (our choice) | up to 1000 (500 ImageNet); "5-7 days on a single GPU" for CIFAR |
| which generator is kept | the last | the one whose scratch classifier had the lowest clean *test* accuracy |
| generator BN statistics when frozen | recomputed over the fit set after each trial | running averages (momentum 0.1) |

What differs and why: a fit has no test set to select the best generator on, so the last one
is kept; ``trials`` is far below the reference's 1000 (each trial costs ``classifier_epochs``
epochs of a second-order step, about 6x a plain training step) and is the knob that sizes the
cost; the classifier is the ResNet-18 every other baseline here attacks. With so few generator
updates the BN running averages lag the weights, and the frozen (eval-mode) generator would not
compute what was trained, so its BN statistics are recomputed over the fit set (see
:func:`recalibrate_batchnorm`); with the reference's 1000 trials they would have converged anyway. The CPU benchmark
profile scales further down (see ``benchmarks/_baselines.py``).

Labels: label-agnostic by default (the class the surrogate classifier predicts, e.g. ImageNet
classes of ``efficientnet-lite0``), label-consistent with ``label_column``; ``y`` enters the
classifier's loss and the generator's objective.

Example:
    >>> from uc_datasets.methods.deepconfuse import DeepConfuse
    >>> prot = DeepConfuse(trials=5, classifier_epochs=2).fit(ds, label_column="label")  # doctest: +SKIP
    >>> protected = ds.map(prot, batched=True)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from uc_datasets.core.imaging import perturb
from uc_datasets.core.models import canonical_victim_name
from uc_datasets.methods.baseline import (
    BaselineMethod,
    BaselineProtector,
    BaselineSettings,
    check_int,
    check_positive,
    check_two_classes,
)
from uc_datasets.methods.optim import BatchStream, build_model

logger = logging.getLogger(__name__)

__all__ = ["AutoEncoder", "DeepConfuse", "DeepConfuseConfig", "confusion_loss", "generator_step", "recalibrate_batchnorm"]


@dataclass
class DeepConfuseConfig(BaselineSettings):
    """DeepConfuse's settings (its own ones are stored as ``BaselineConfig.params``), checked on creation.

    ``trials``: fresh classifiers trained in turn, after each of which the poisoning generator
    is replaced by the trained one (20; reference up to 1000); ``classifier_epochs``: epochs of
    each trial's classifier (20, the CIFAR reference); ``batch_size`` of the classifier and the
    generator (256); ``lr``: the classifier's plain-SGD learning rate, also the pseudo-update's
    step (0.01); ``generator_lr``: Adam learning rate of the auto-encoder (1e-4);
    ``generator_channels``, ``generator_depth``: the auto-encoder's first width (16) and number
    of stride-2 levels (4), see :class:`AutoEncoder`; ``model``, ``model_width``: the classifier.

    Example:
        >>> DeepConfuseConfig(trials=2, classifier_epochs=1).batch_size
        256
        >>> DeepConfuseConfig(trials=0)
        Traceback (most recent call last):
        ValueError: trials must be an integer >= 1, got 0.
    """

    trials: int = 20
    classifier_epochs: int = 20
    batch_size: int = 256
    lr: float = 0.01
    generator_lr: float = 1e-4
    generator_channels: int = 16
    generator_depth: int = 4
    model: str = "resnet18"
    model_width: float = 1.0

    def _check_params(self) -> None:
        super()._check_params()
        check_int(trials=self.trials, classifier_epochs=self.classifier_epochs, batch_size=self.batch_size,
                  generator_channels=self.generator_channels, generator_depth=self.generator_depth)
        check_positive(lr=self.lr, generator_lr=self.generator_lr, model_width=self.model_width)
        if self.generator_depth > 8:
            raise ValueError(f"generator_depth={self.generator_depth} halves the image more than 8 times; "
                             "use 4 (the reference) or fewer for small images.")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a victim name such as 'resnet18', got {self.model!r}.")
        canonical_victim_name(self.model)  # raises ValueError listing the victims

    def to_params(self) -> dict:
        """The dict stored in the protector's config (with the fixed choices spelled out)."""
        return {**self.own_params(), "generator_optimizer": "adam", "classifier_optimizer": "sgd (no momentum)",
                "bound": "epsilon * tanh", "kept": "last generator"}


class AutoEncoder(nn.Module):
    """The perturbation generator: strided conv encoder, transposed-conv decoder, ``tanh`` output in (-1, 1).

    ``depth`` stride-2 4x4 convolutions (``channels * 2**i`` channels, BN, ReLU) and as many
    stride-2 4x4 transposed convolutions back; the last one has 3 channels and a ``tanh``.
    Images whose sides are not multiples of ``2**depth`` are padded (edge values) and the
    output cropped back, so any size works.

    Example:
        >>> g = AutoEncoder(channels=4, depth=2)
        >>> g(torch.rand(2, 3, 7, 9)).shape
        torch.Size([2, 3, 7, 9])
    """

    def __init__(self, channels: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        widths = [3] + [channels * 2**i for i in range(depth)]
        down: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            down += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        up: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths[::-1])):
            up.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            up += [nn.BatchNorm2d(b), nn.ReLU()] if i < depth - 1 else [nn.Tanh()]
        self.encoder, self.decoder = nn.Sequential(*down), nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.decoder(self.encoder(x))[..., :h, :w]


def confusion_loss(classifier: nn.Module, delta: torch.Tensor, x: torch.Tensor, grey: torch.Tensor,
                   y: torch.Tensor, *, lr: float) -> torch.Tensor:
    """The clean cross-entropy of ``classifier`` after one SGD step on ``x + delta``: what ``g`` maximises.

    ``theta' = theta - lr * grad CE(f_theta(x + delta), y)`` with the graph kept, then
    ``CE(f_theta'(x), y)``; differentiable with respect to ``delta`` (and what made it). The
    classifier is not changed: both forwards run on copies of its buffers (BN statistics).

    Args:
        classifier: ``f`` (its mode decides batch or running BN statistics).
        delta: perturbations ``(B, 3, h, w)``; x: clean images ``(B, 3, h, w)`` in [0, 1];
        grey: ``(B,)`` bool; y: labels ``(B,)``; lr: the classifier's SGD step.

    Example:
        >>> f = build_model("resnet18", 2, width=0.0625, hw=(8, 8), seed=0, device=torch.device("cpu"))
        >>> d = torch.zeros(2, 3, 8, 8, requires_grad=True)
        >>> loss = confusion_loss(f, d, torch.rand(2, 3, 8, 8), torch.tensor([False, True]), torch.tensor([0, 1]),
        ...                       lr=0.01)
        >>> torch.autograd.grad(loss, d)[0].shape
        torch.Size([2, 3, 8, 8])
    """
    params = dict(classifier.named_parameters())
    buffers = {k: v.clone() for k, v in classifier.named_buffers()}
    inner = F.cross_entropy(functional_call(classifier, (params, buffers), (perturb(x, delta, grey),)), y)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    stepped = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
    return F.cross_entropy(functional_call(classifier, (stepped, buffers), (x,)), y)


def generator_step(gen: AutoEncoder, optimizer: torch.optim.Optimizer, classifier: nn.Module, x: torch.Tensor,
                   grey: torch.Tensor, y: torch.Tensor, *, epsilon: float, lr: float) -> float:
    """One update of ``gen`` at the classifier's current weights: ascend :func:`confusion_loss`.

    The generator runs in train mode on the batch ``x`` (``(B, 3, h, w)`` in [0, 1]); only its
    weights get gradients (the classifier's ``.grad`` are left alone). Returns the
    confusion loss before the step.

    Example:
        >>> g = AutoEncoder(4, 2)
        >>> f = build_model("resnet18", 2, width=0.0625, hw=(8, 8), seed=0, device=torch.device("cpu"))
        >>> opt = torch.optim.Adam(g.parameters(), lr=1e-4)
        >>> loss = generator_step(g, opt, f, torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.bool),
        ...                       torch.tensor([0, 1, 0, 1]), epsilon=8 / 255, lr=0.01)
    """
    gen.train()
    params = [p for p in gen.parameters() if p.requires_grad]
    conf = confusion_loss(classifier, epsilon * gen(x), x, grey, y, lr=lr)
    grads = torch.autograd.grad(-conf, params)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    return float(conf.detach())


def _new_generator(s: DeepConfuseConfig, seed: int, device: torch.device) -> AutoEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoEncoder(s.generator_channels, s.generator_depth).to(device)


@torch.no_grad()
def recalibrate_batchnorm(gen: nn.Module, x: torch.Tensor, *, batch_size: int, device: torch.device) -> None:
    """Set every BN layer's running statistics to their average over the uint8 images ``x`` ``(N, 3, h, w)``.

    The generator is trained with batch statistics; its running estimates (momentum 0.1)
    lag its weights after few updates, so in eval mode it would not compute what was
    trained. One pass with a cumulative average fixes that; the weights are not touched.

    Example:
        >>> g = AutoEncoder(4, 2)
        >>> recalibrate_batchnorm(g, torch.full((4, 3, 8, 8), 200, dtype=torch.uint8), batch_size=2,
        ...                       device=torch.device("cpu"))
        >>> bool(g.encoder[1].running_mean.abs().sum() > 0), g.encoder[1].momentum
        (True, 0.1)
    """
    norms = [m for m in gen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    gen.train()
    for s in range(0, len(x), batch_size):
        gen(x[s : s + batch_size].to(device).float().div_(255))
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    gen.eval()


@torch.no_grad()
def _perturbations(gen: AutoEncoder, x: torch.Tensor, *, epsilon: float, batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """``epsilon * g(x)`` for uint8 images ``(N, 3, h, w)`` in eval mode, on the CPU."""
    gen.eval()
    out = [epsilon * gen(x[s : s + batch_size].to(device).float().div_(255)).cpu()
           for s in range(0, len(x), batch_size)]
    return torch.cat(out).clamp_(-epsilon, epsilon) if out else torch.zeros(0, 3, *x.shape[-2:])


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, grey: torch.Tensor, y: torch.Tensor, deltas: torch.Tensor | None, *,
              batch_size: int, device: torch.device) -> float:
    net.eval()
    right = 0
    for s in range(0, len(x), batch_size):
        xb = x[s : s + batch_size].to(device).float().div_(255)
        if deltas is not None:
            xb = perturb(xb, deltas[s : s + batch_size].to(device), grey[s : s + batch_size])
        right += int((net(xb).argmax(1).cpu() == y[s : s + batch_size]).sum())
    return right / max(1, len(x))


class DeepConfuse(BaselineMethod):
    """Train a DeepConfuse auto-encoder and store its noise for every image (sample-wise).

    Example:
        >>> DeepConfuse(trials=5, classifier_epochs=2).config.trials
        5
    """

    name: ClassVar[str] = "deepconfuse"
    names: ClassVar[tuple[str, ...]] = ("DeepConfuse",)
    config: DeepConfuseConfig
    config_class: ClassVar[type[DeepConfuseConfig]] = DeepConfuseConfig
    perturbation: ClassVar[str] = "samplewise"

    def fit(self, ds: datasets.Dataset, *, image_column: str = "image",
            label_column: str | None = None) -> BaselineProtector:
        """Fit on every image of ``ds[image_column]`` (``label_column``: label-consistent mode).

        Returns:
            A sample-wise :class:`~uc_datasets.methods.baseline.BaselineProtector`, ``deltas``
            ``(n_images, 3, h, w)``. ``metadata["stats"]`` holds, per trial, the mean
            ``confusion_loss`` (the generator's objective, higher is better for it) and the mean
            loss of the classifier on the poisoned batches, and the accuracy of the last trial's
            classifier (trained on the previous trial's noise) on the fit images with the final
            noise and clean.

        Raises:
            LabelSourceError: fewer than 2 classes.
        """
        from tqdm.auto import tqdm

        s, progress = self.config, self.progress
        seed = s.seed
        cfg, device, data = self.start(ds, image_column=image_column, label_column=label_column, params=s.to_params())
        check_two_classes(data, "DeepConfuse")
        t0 = time.perf_counter()
        eps, n_classes = cfg.epsilon, len(data.classes)
        x, grey, y = data.x, data.grey, data.y
        gen = _new_generator(s, seed, device)
        frozen = copy.deepcopy(gen).eval().requires_grad_(False)
        g_opt = torch.optim.Adam(gen.parameters(), lr=s.generator_lr)
        stream = BatchStream(len(x), s.batch_size, seed=seed + 1)
        confusion, poisoned = [], []
        net = None
        bar = tqdm(range(s.trials), desc="DeepConfuse trials", disable=not progress)
        for trial in bar:
            net = build_model(s.model, n_classes, width=s.model_width, hw=data.hw, seed=seed + 2 + trial, device=device)
            f_opt = torch.optim.SGD(net.parameters(), lr=s.lr)
            conf_sum = pois_sum = 0.0
            n_steps = 0
            steps = tqdm(total=s.classifier_epochs * math.ceil(len(x) / s.batch_size), desc=f"trial {trial + 1}",
                         disable=not progress, leave=False)
            for _ in range(s.classifier_epochs):
                for idx in stream.epoch():
                    xb, gb, yb = x[idx].to(device).float().div_(255), grey[idx], y[idx].to(device)
                    net.train()
                    conf = generator_step(gen, g_opt, net, xb, gb, yb, epsilon=eps, lr=s.lr)
                    # the classifier's real step, on the poison of the trial's frozen generator
                    with torch.no_grad():
                        d = eps * frozen(xb)
                    loss = F.cross_entropy(net(perturb(xb, d, gb)), yb)
                    f_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    f_opt.step()
                    conf_sum, pois_sum, n_steps = conf_sum + conf, pois_sum + float(loss.detach()), n_steps + 1
                    steps.update(1)
            steps.close()
            recalibrate_batchnorm(gen, x, batch_size=s.batch_size, device=device)
            frozen.load_state_dict(gen.state_dict())
            confusion.append(round(conf_sum / n_steps, 6))
            poisoned.append(round(pois_sum / n_steps, 6))
            bar.set_postfix(confusion=f"{confusion[-1]:.3f}", poisoned=f"{poisoned[-1]:.3f}")
            logger.info("DeepConfuse trial %d/%d: confusion loss %.4f (clean loss after a pseudo-step), classifier "
                        "loss on poison %.4f", trial + 1, s.trials, confusion[-1], poisoned[-1])
        row_of, uniq = data.unique_rows()
        all_deltas = _perturbations(frozen, x, epsilon=eps, batch_size=s.batch_size, device=device)
        deltas = torch.zeros(len(uniq), 3, *data.hw)
        deltas[row_of] = all_deltas
        kw = {"batch_size": s.batch_size, "device": device}
        stats = {"trials": s.trials, "confusion_loss": confusion, "classifier_loss_on_poison": poisoned,
                 "last_classifier_accuracy_poisoned": round(_accuracy(net, x, grey, y, all_deltas, **kw), 6),
                 "last_classifier_accuracy_clean": round(_accuracy(net, x, grey, y, None, **kw), 6)}
        logger.info("DeepConfuse: last classifier (trained on the previous trial's poison) is %.3f accurate on the "
                    "poisoned and %.3f on the clean fit images", stats["last_classifier_accuracy_poisoned"],
                    stats["last_classifier_accuracy_clean"])
        return self.finish(cfg, deltas, data, ds=ds, image_column=image_column,
                           seconds={"attack": round(time.perf_counter() - t0, 3)}, stats=stats)
