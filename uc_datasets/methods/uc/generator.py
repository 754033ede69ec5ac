"""Perturbation parametrisations: the reference's ResNet encoder-decoder, or delta itself.

Both map to a perturbation ``delta`` of shape ``(3, H, W)`` inside ``[-eps, eps]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), _bn(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), _bn(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    # Batch statistics of the one fixed noise input, in training and at export alike:
    # the generator is only ever run on that input, so this is deterministic.
    return nn.BatchNorm2d(ch, track_running_stats=False)


class ResnetGenerator(nn.Module):
    """The reference ResNet encoder-decoder (ngf=64, 6 residual blocks, Tanh output).

    ReflectionPad3 + Conv7x7 3->ngf, two stride-2 Conv3x3 (ngf->2ngf->4ngf), ``n_blocks``
    residual blocks, two stride-2 ConvTranspose back to ngf, ReflectionPad3 + Conv7x7 -> 3 +
    Tanh. Input and output sizes must be multiples of 4.

    Example:
        >>> g = ResnetGenerator(ngf=8, n_blocks=1)
        >>> g(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 6):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=False), _bn(ngf), nn.ReLU(True),
            nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1, bias=False), _bn(ngf * 2), nn.ReLU(True),
            nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1, bias=False), _bn(ngf * 4), nn.ReLU(True),
        ]
        layers += [_ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        layers += [
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, stride=2, padding=1, output_padding=1, bias=False),
            _bn(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 3, stride=2, padding=1, output_padding=1, bias=False),
            _bn(ngf), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def generator_size(hw: tuple[int, int]) -> tuple[int, int]:
    """Smallest size >= ``hw`` (and >= 8) that the generator maps to itself."""
    return tuple(max(8, 4 * math.ceil(s / 4)) for s in hw)  # type: ignore[return-value]


class Perturbation(nn.Module):
    """One cluster's perturbation: ``delta = clamp(G(sigma), -eps, eps)`` cropped to ``hw``.

    ``parametrization="generator"`` is the reference: a fresh :class:`ResnetGenerator` fed
    a fixed uniform noise image ``sigma``. ``"direct"`` optimises delta itself as
    ``eps * tanh(w)``.

    Example:
        >>> p = Perturbation((10, 10), 8 / 255, "direct", seed=0)
        >>> d = p()
        >>> d.shape, bool(d.abs().max() <= 8 / 255)
        (torch.Size([3, 10, 10]), True)
    """

    def __init__(self, hw: tuple[int, int], epsilon: float, parametrization: str = "generator",
                 *, ngf: int = 64, n_blocks: int = 6, seed: int = 0):
        super().__init__()
        if parametrization not in ("generator", "direct"):
            raise ValueError(f"parametrization must be 'generator' or 'direct', got {parametrization!r}")
        self.hw = tuple(hw)
        self.epsilon = float(epsilon)
        self.parametrization = parametrization
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG alone
            torch.manual_seed(seed)
            if parametrization == "generator":
                gh, gw = generator_size(self.hw)
                self.register_buffer("sigma", torch.rand(1, 3, gh, gw))
                self.net = ResnetGenerator(ngf=ngf, n_blocks=n_blocks)
            else:
                self.w = nn.Parameter((torch.rand(3, *self.hw) * 2 - 1) * 0.5)

    def forward(self) -> torch.Tensor:
        if self.parametrization == "direct":
            return self.epsilon * torch.tanh(self.w)
        out = self.net(self.sigma)[0]
        gh, gw = out.shape[-2:]
        h, w = self.hw
        top, left = (gh - h) // 2, (gw - w) // 2
        out = out[:, top : top + h, left : left + w]
        return out.clamp(-self.epsilon, self.epsilon)
