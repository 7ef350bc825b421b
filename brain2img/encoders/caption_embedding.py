"""Caption embeddings in Stable Diffusion's text-conditioning space: the Osaka method's target ``c``.

Takagi & Nishimoto (``codes/utils/img2feat_sd.py``) embed every COCO caption of an image with SD v1's
``FrozenCLIPEmbedder`` (CLIP ViT-L/14 text transformer: tokens padded to 77 with truncation, ``last_hidden_state``)
and average the ``(77, 768)`` embeddings over the image's captions; the ridge then predicts the 59,136 values.
:class:`CaptionEmbedder` does the same with a transformers ``CLIPTokenizer`` + ``CLIPTextModel`` from a local folder
(an SD diffusers folder has them in ``tokenizer/`` and ``text_encoder/``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PATH_KEY = "model.captions.text_encoder (command line: --model.init_args.captions.text_encoder)"


def _check_folder(folder: Path, sub: str, marker: str) -> None:
    if not (folder / sub / marker).is_file():
        raise FileNotFoundError(f"text encoder folder '{folder}' has no {sub}/{marker}: {PATH_KEY} must be a local "
                                "folder with tokenizer/ (CLIPTokenizer) and text_encoder/ (CLIPTextModel), e.g. a "
                                "Stable Diffusion 1.x diffusers folder (nothing is downloaded)")


class CaptionEmbedder(nn.Module):
    """Frozen CLIP text encoder: captions of each image -> mean ``(max_length, D)`` hidden states.

    Args:
        path: folder with ``tokenizer/`` and ``text_encoder/`` subfolders.
        max_length: token length (77 in SD 1.x; longer captions are truncated, as the reference).
        batch_size: captions encoded per forward pass.
    """

    def __init__(self, path: str | Path, max_length: int = 77, batch_size: int = 64) -> None:
        super().__init__()
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(path).expanduser()
        _check_folder(folder, "tokenizer", "tokenizer_config.json")
        _check_folder(folder, "text_encoder", "config.json")
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
        self.model.eval().requires_grad_(False)
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.dim = int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> CaptionEmbedder:
        """Stay in eval mode (frozen)."""
        return super().train(False)

    @property
    def output_dim(self) -> int:
        """Values per image: ``max_length * D``."""
        return self.max_length * self.dim

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """``(N, max_length, D)`` last hidden states of ``N`` texts."""
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.tokenizer(texts[start:start + self.batch_size], padding="max_length",
                                 max_length=self.max_length, truncation=True, return_tensors="pt").input_ids
            out.append(self.model(input_ids=ids.to(device)).last_hidden_state.float())
        return torch.cat(out)

    @torch.no_grad()
    def forward(self, captions: list[list[str]]) -> torch.Tensor:
        """Mean embedding of each image's captions: ``(B, max_length, D)``.

        Raises:
            ValueError: an image with no caption.
        """
        empty = [k for k, c in enumerate(captions) if not c]
        if empty:
            raise ValueError(f"CaptionEmbedder: images at batch positions {empty} have no caption")
        flat = [text for group in captions for text in group]
        emb = self.encode(flat)
        sizes = [len(c) for c in captions]
        return torch.stack([chunk.mean(0) for chunk in emb.split(sizes)])
