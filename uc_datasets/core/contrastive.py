"""The contrastive pieces shared by the SimCLR hacker and the contrastive residual of UC: the
encoder (a victim backbone with a projection head) and the NT-Xent loss.

Example:
    >>> import torch
    >>> nt_xent_loss(torch.randn(4, 8), torch.randn(4, 8)).ndim
    0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uc_datasets.core.models import build_victim


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent: cross entropy of each of the 2B views against the other 2B - 1, cosine / temperature.

    ``z1[i]`` and ``z2[i]`` are the two views of image i; the other 2B - 2 views are negatives.
    Unrelated embeddings give about ``log(2B - 1)``.

    Example:
        >>> z = torch.eye(4)
        >>> round(float(nt_xent_loss(z, z, temperature=0.1)), 4)
        0.0003
    """
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must both be (B, D) with B >= 2; got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(logits, targets)


class SimCLREncoder(nn.Module):
    """A victim backbone without its classifier plus SimCLR's 2-layer projection head.

    ``features(pixels)`` gives the pooled backbone features (B, D) (what the probe sees);
    ``forward(pixels)`` gives the projection (B, projection_dim) that the loss sees. Pixels are
    images in [0, 1]; the encoder normalises them like the victims do.

    Example:
        >>> encoder = SimCLREncoder(width=0.125, image_size=8, projection_dim=16)
        >>> encoder.features(torch.rand(2, 3, 8, 8)).shape, encoder(torch.rand(2, 3, 8, 8)).shape
        (torch.Size([2, 64]), torch.Size([2, 16]))
    """

    def __init__(
        self,
        arch: str = "resnet18",
        *,
        width: float = 1.0,
        image_size: int = 32,
        small_input: bool | None = None,
        projection_dim: int = 128,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        victim = build_victim(arch, 2, width=width, image_size=image_size, small_input=small_input, seed=seed)
        self.arch, self.width, self.small_input = victim.name, victim.width, victim.small_input
        # The classification model's base (ResNetModel, RegNetModel, EfficientNetModel) pools.
        self.backbone = getattr(victim.model, victim.model.base_model_prefix)
        self.register_buffer("mean", victim.mean.clone(), persistent=False)
        self.register_buffer("std", victim.std.clone(), persistent=False)
        head = victim.model.classifier
        self.feature_dim = int((head[-1] if isinstance(head, nn.Sequential) else head).in_features)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed + 1)
            self.projector = nn.Sequential(
                nn.Linear(self.feature_dim, self.feature_dim, bias=False),
                nn.BatchNorm1d(self.feature_dim),
                nn.ReLU(inplace=True),
                nn.Linear(self.feature_dim, projection_dim),
            )

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, D) of images in [0, 1]."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"The encoder takes RGB images (B, 3, H, W) in [0, 1]; got {tuple(pixels.shape)}.")
        return self.backbone(pixel_values=(pixels - self.mean) / self.std).pooler_output.flatten(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(pixels))
