"""Tiny Stable-Diffusion-layout folders written with save_pretrained, for tests that load weights from a path.

The tokenizer is a character-level CLIP BPE vocabulary (every byte character, alone and word-final, no merges),
so any caption tokenizes; the text encoder is a 2-layer CLIPTextModel. All weights are seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel


def _byte_characters() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0..255 (GPT-2/CLIP convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_char_tokenizer(folder: Path) -> int:
    """Save a character-level ``CLIPTokenizer`` to ``folder``; return its vocabulary size."""
    from transformers import CLIPTokenizer

    chars = _byte_characters()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    words = folder.parent / f"{folder.name}_words"
    words.mkdir(parents=True, exist_ok=True)
    (words / "vocab.json").write_text(json.dumps(vocab))
    (words / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(words / "vocab.json"), str(words / "merges.txt")).save_pretrained(folder)
    return len(vocab)


def write_text_encoder(root: Path, hidden: int = 32, seed: int = 0) -> None:
    """``tokenizer/`` + ``text_encoder/`` under ``root`` (77 positions, as SD 1.x)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab_size = write_char_tokenizer(root / "tokenizer")
    torch.manual_seed(seed)
    CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37,
                                 num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(root / "text_encoder")


def write_sd_folder(root: Path, cross_attention_dim: int = 32, text_encoder: bool = True, unet: str = "unet",
                    seed: int = 0) -> Path:
    """A tiny SD 1.x diffusers folder (``vae/``, ``{unet}/``, ``scheduler/`` with SD's PNDM config and, optionally,
    ``tokenizer/`` + ``text_encoder/``); images of 16 px give 4 x 8 x 8 latents."""
    torch.manual_seed(seed)
    AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  ).save_pretrained(root / "vae")
    UNet2DConditionModel(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=cross_attention_dim,
                         attention_head_dim=2).save_pretrained(root / unet)
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(root / "scheduler")
    if text_encoder:
        write_text_encoder(root, hidden=cross_attention_dim, seed=seed)
    return root
