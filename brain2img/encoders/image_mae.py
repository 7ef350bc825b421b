"""The image masked autoencoder of DC-MAE stage 2: transformers' ViT-MAE, from a local folder or tiny and offline.

DC-MAE guides the fMRI autoencoder with ``facebook/vit-mae-base`` (224 px, patch 16, 197 tokens of width 768) and
trains the image autoencoder's reconstruction with cross-attention to the fMRI latent. :class:`ImageMAE` wraps
:class:`transformers.ViTMAEForPreTraining` and splits its forward in the three pieces stage 2 needs: the unmasked
tokens (keys and values for the fMRI side), the masked encoding, and decoding + the masked-patch pixel loss (the
model's own ``patchify`` and ``norm_pix_loss`` rule). Images come in as ``(B, 3, H, W)`` in ``[0, 1]`` and are
resized and normalised as the ViT-MAE image processor does (ImageNet mean and std).

``kind="hf"`` loads a local transformers folder (``ViTMAEForPreTraining.from_pretrained(path)``; no download);
``kind="tiny"`` builds a small random-weight ViT-MAE (32 px, patch 8) from a seed, for tests and the CPU benchmark.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from brain2img.presets import Spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageMAESpec(Spec):
    """The image masked autoencoder of DC-MAE stage 2.

    Attributes:
        kind: ``hf`` (a local transformers ViT-MAE folder, e.g. facebook/vit-mae-base) or ``tiny`` (random weights).
        path: the folder for ``kind: hf``.
        mask_ratio: share of image patches masked (DC-MAE README 0.5; its config 0.75).
        decoder_depth: decoder layers kept (DC-MAE 6; ViT-MAE-base ships 8, the first 6 are loaded).
        seed: seed of the tiny model's weights.
    """

    kind: Literal["hf", "tiny"] = "tiny"
    path: str | None = None
    mask_ratio: float = 0.5
    decoder_depth: int = 6
    seed: int = 0


def _tiny_config(mask_ratio: float, decoder_depth: int):  # noqa: ANN202 (transformers config)
    from transformers import ViTMAEConfig

    return ViTMAEConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, decoder_hidden_size=32, decoder_num_hidden_layers=decoder_depth,
                        decoder_num_attention_heads=4, decoder_intermediate_size=64, mask_ratio=mask_ratio)


class ImageMAE(nn.Module):
    """A ViT-MAE split for cross-modal guidance (see the module docstring).

    Args:
        spec: :class:`ImageMAESpec` (or a dict of its fields).

    Raises:
        FileNotFoundError: ``kind: hf`` without an existing folder (named, with the field).
        ValueError: a mask ratio outside ``[0, 1)`` or a decoder depth below 1.
    """

    def __init__(self, spec: ImageMAESpec | dict | None = None) -> None:
        super().__init__()
        from transformers import ViTMAEForPreTraining

        spec = ImageMAESpec.coerce(spec)
        if not 0 <= spec.mask_ratio < 1 or spec.decoder_depth < 1:
            raise ValueError(f"image_mae: need mask_ratio in [0, 1) and decoder_depth >= 1, got {spec.mask_ratio}, "
                             f"{spec.decoder_depth} (model.image_mae)")
        if spec.kind == "hf":
            if not spec.path or not Path(spec.path).is_dir():
                raise FileNotFoundError(f"image_mae.path: no ViT-MAE folder at {spec.path!r} (model.image_mae.path: "
                                        "a local transformers folder such as facebook/vit-mae-base; nothing is "
                                        "downloaded)")
            self.model = ViTMAEForPreTraining.from_pretrained(spec.path, mask_ratio=spec.mask_ratio,
                                                              decoder_num_hidden_layers=spec.decoder_depth)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                self.model = ViTMAEForPreTraining(_tiny_config(spec.mask_ratio, spec.decoder_depth))
        cfg = self.model.config
        self.image_size, self.hidden_size, self.mask_ratio = int(cfg.image_size), int(cfg.hidden_size), spec.mask_ratio
        self.n_tokens = (self.image_size // int(cfg.patch_size)) ** 2 + 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> the model's normalised input at its image size."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ImageMAE expects images (B, 3, H, W), got {tuple(images.shape)}")
        x = images.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x.clamp(0, 1) - self.mean) / self.std

    @contextmanager
    def _ratio(self, ratio: float):  # noqa: ANN202
        cfg = self.model.vit.embeddings.config
        old, cfg.mask_ratio = cfg.mask_ratio, ratio
        try:
            yield
        finally:
            cfg.mask_ratio = old

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unmasked encoder tokens ``(B, n_tokens, hidden_size)`` (CLS first), the fMRI side's keys and values."""
        with self._ratio(0.0):
            return self.model.vit(pixels).last_hidden_state

    def masked(self, pixels: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode with ``mask_ratio`` of the patches masked: ``(latent, mask, ids_restore)``; masks drawn from
        ``generator`` when given (reproducible validation)."""
        b, n = len(pixels), self.n_tokens - 1
        noise = torch.rand(b, n, device=pixels.device, generator=generator)
        out = self.model.vit(pixels, noise=noise)
        return out.last_hidden_state, out.mask, out.ids_restore

    def decode_loss(self, pixels: torch.Tensor, latent: torch.Tensor, ids_restore: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
        """Decode ``latent`` and return the MSE on the masked patches (per-patch normalised targets when the
        model's ``norm_pix_loss`` is set, as transformers does)."""
        logits = self.model.decoder(latent, ids_restore).logits
        target = self.model.patchify(pixels)
        if self.model.config.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1.0e-6) ** 0.5
        per_patch = ((logits.float() - target.float()) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


TINY_IMAGE_MAE = ImageMAESpec()  #: the default (frozen, so one shared instance is a safe argument default)
