"""Regression targets of a stimulus (VAE latent z, condition c), computed once per stimulus id.

``c`` comes from a *condition source*, a callable ``(images, stimulus_ids) -> (B, d)``:

- :class:`ImageCondition`: the image encoder's pooled embedding (the simulated benchmark's c).
- :class:`CaptionCondition`: the mean text embedding of the image's COCO captions, flattened (the reference's c on
  NSD: SD's CLIP text encoder, 77 x 768 = 59,136 values).

Condition sources are plain objects, not registered modules: their weights are frozen helpers of training and
evaluation and are not saved in checkpoints (reconstruction needs only the fitted ridges and the backbone).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from brain2img.data import schema
from brain2img.data.nsd.captions import NSDCaptions
from brain2img.encoders.caption_embedding import CaptionEmbedder

ConditionSource = Callable[[torch.Tensor, list[int]], torch.Tensor]


class ImageCondition:
    """``c`` = ``encoder(images)["pooled"]``.

    Args:
        encoder: module whose output dict has ``pooled``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder = encoder

    def __call__(self, images: torch.Tensor, ids: list[int]) -> torch.Tensor:
        return self.encoder(images)["pooled"]


class CaptionCondition:
    """``c`` = mean CLIP text embedding of the image's captions, flattened to ``(B, max_length * D)``.

    Args:
        text_encoder: folder with ``tokenizer/`` and ``text_encoder/`` (e.g. the SD folder).
        root: NSD root (captions located as NSD ships them), or:
        stim_info: ``nsd_stim_info_merged.csv``.
        annotations: folder of ``captions_{train,val}2017.json``.
        max_length: tokens per caption (77).
        batch_size: captions per text-encoder pass.
    """

    def __init__(self, text_encoder: str | Path, root: str | Path | None = None, stim_info: str | Path | None = None,
                 annotations: str | Path | None = None, max_length: int = 77, batch_size: int = 64) -> None:
        self.captions = NSDCaptions(root, stim_info, annotations)
        self.embedder = CaptionEmbedder(text_encoder, max_length, batch_size)

    @property
    def output_dim(self) -> int:
        """Values of one flattened c."""
        return self.embedder.output_dim

    def __call__(self, images: torch.Tensor, ids: list[int]) -> torch.Tensor:
        self.embedder.to(images.device)
        return self.embedder(self.captions(ids)).flatten(1)


class StimulusCache:
    """Targets of a stimulus (a VAE latent, an image embedding, image tokens ...), computed once per stimulus id.

    Every repetition of an image has the same targets, so each unique image of a run goes through the frozen
    encoders once, however many trials show it. The cache holds no parameters and is never saved. Every method's
    per-stimulus targets go through it.

    Args:
        compute: ``(images (n, 3, H, W), stimulus ids) -> tuple of tensors (n, ...)`` for the images not cached yet.
    """

    def __init__(self, compute: Callable[[torch.Tensor, list[int]], tuple[torch.Tensor, ...]]) -> None:
        self.compute = compute
        self._store: dict[int, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget cached targets (e.g. after an encoder's weights changed)."""
        self._store.clear()

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The targets of the batch's stimuli, stacked in batch order: one tensor ``(B, ...)`` per target."""
        ids = [int(i) for i in batch[schema.STIMULUS_ID]]
        missing = [k for k, i in enumerate(ids) if i not in self._store]
        if missing:
            values = self.compute(batch[schema.IMAGE][missing], [ids[k] for k in missing])
            for row, k in enumerate(missing):
                self._store[ids[k]] = tuple(v[row].detach() for v in values)
        return tuple(torch.stack(column) for column in zip(*(self._store[i] for i in ids), strict=True))


class StimulusTargets(StimulusCache):
    """The Osaka method's targets ``z (B, prod(latent_shape))`` and ``c (B, d)`` of a batch, cached by stimulus id.

    Args:
        backbone: the latent-diffusion backbone (``encode_images`` gives z).
        condition: the condition source giving c (see the module docstring).
    """

    def __init__(self, backbone: nn.Module, condition: ConditionSource) -> None:
        super().__init__(self._z_and_c)
        self._parts = (backbone, condition)  # not registered: owned by the method

    def _z_and_c(self, images: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        backbone, condition = self._parts
        return backbone.encode_images(images).flatten(1), condition(images, ids)
