"""Regression targets of a stimulus (VAE latent z, image embedding c), computed once per stimulus id."""

from __future__ import annotations

import torch
from torch import nn

from brain2img.data import schema


class StimulusTargets(nn.Module):
    """Compute ``(z, c)`` for the images of a batch, caching them by stimulus id.

    Every repetition of a stimulus has the same targets, so each unique image goes through the VAE and the image
    encoder once per run, however many trials show it. The cache holds no parameters and is not saved.

    Args:
        backbone: the latent-diffusion backbone (``encode_images`` gives z).
        image_encoder: module whose output dict has ``pooled`` (the c of the image).
    """

    def __init__(self, backbone: nn.Module, image_encoder: nn.Module) -> None:
        super().__init__()
        self._modules_ref = (backbone, image_encoder)  # not registered: owned by the method
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def clear(self) -> None:
        """Forget cached targets (e.g. after the backbone's weights changed)."""
        self._cache.clear()

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``z (B, prod(latent_shape))`` and ``c (B, condition_dim)`` for the batch."""
        backbone, encoder = self._modules_ref
        ids = [int(i) for i in batch[schema.STIMULUS_ID]]
        missing = [k for k, i in enumerate(ids) if i not in self._cache]
        if missing:
            images = batch[schema.IMAGE][missing]
            z = backbone.encode_images(images).flatten(1)
            c = encoder(images)["pooled"]
            for row, k in enumerate(missing):
                self._cache[ids[k]] = (z[row].detach(), c[row].detach())
        z, c = zip(*(self._cache[i] for i in ids), strict=True)
        return torch.stack(z), torch.stack(c)
