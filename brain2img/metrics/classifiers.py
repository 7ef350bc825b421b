"""Feature nets for the metrics, chosen by config: the offline EfficientNet-Lite0 (default) or any torchvision
ImageNet classifier loaded from a local weights file (e.g. the reference's ViT-H/14 SWAG for n-way top-1).

A feature net maps images in ``[0, 1]`` ``(B, 3, H, W)`` to ``{"pooled": (B, D), "logits": (B, C)}``: ``logits`` feed
the n-way top-k metric, ``pooled`` (the input of the final linear layer) the 2-way identification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("efficientnet_lite0", "torchvision")


class TorchvisionClassifier(nn.Module):
    """A frozen torchvision classification model with weights from a local file.

    Args:
        name: a torchvision model name (``torchvision.models.get_model``), e.g. ``vit_h_14`` or ``resnet50``.
        weights_path: local state-dict file of that model (nothing is downloaded).
        input_size: images are resized (bicubic, antialiased) to this square size (ViT-H/14 SWAG: 518).
        mean: normalisation mean.
        std: normalisation std.
        model_kwargs: extra ``get_model`` arguments (e.g. ``{"image_size": 518}`` for ViT-H/14 SWAG).
    """

    def __init__(self, name: str, weights_path: str | Path, input_size: int = 224,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 model_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        import torchvision

        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"classifier weights '{path}' not found (model.metrics.classifier.weights_path): "
                                    f"save the {name} state dict there (nothing is downloaded)")
        self.net = torchvision.models.get_model(name, weights=None, **(model_kwargs or {}))
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"classifier weights '{path}' do not fit torchvision model '{name}': {err}") from err
        self.net.eval().requires_grad_(False)
        heads = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not heads:
            raise ValueError(f"torchvision model '{name}' has no linear classification head")
        self._pooled: torch.Tensor | None = None
        heads[-1].register_forward_pre_hook(self._keep_pooled)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _keep_pooled(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._pooled = args[0]

    def train(self, mode: bool = True) -> TorchvisionClassifier:
        """Stay in eval mode (frozen)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``pooled`` (input of the last linear layer) and ``logits``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(self.input_size,) * 2, mode="bicubic", antialias=True,
                          align_corners=False)
        logits = self.net((x.clamp(0, 1) - self.mean) / self.std)
        pooled, self._pooled = self._pooled, None
        return {"pooled": pooled.flatten(1), "logits": logits}


def build_feature_net(kind: str = "efficientnet_lite0", **kwargs: Any) -> nn.Module:
    """Build a metrics feature net: ``efficientnet_lite0`` (``weights_path`` optional) or ``torchvision``
    (``name``, ``weights_path``, ``input_size``, ...; see :class:`TorchvisionClassifier`)."""
    if kind == "efficientnet_lite0":
        from brain2img.encoders.image_features import EfficientNetLite0Features

        return EfficientNetLite0Features(kwargs.pop("weights_path", None), **kwargs)
    if kind == "torchvision":
        return TorchvisionClassifier(**kwargs)
    raise ValueError(f"unknown metrics classifier kind {kind!r} (model.metrics.classifier.kind); choose from {KINDS}")
