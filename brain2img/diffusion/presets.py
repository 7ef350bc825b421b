"""Build the shared backbone from a preset name and plain config values (``model.backbone`` in YAML).

- ``tiny``: small random-weight VAE + UNet + conditioner from :class:`~brain2img.diffusion.tiny.TinyConfig` values
  (offline, milliseconds; tests and smoke runs).
- ``tiny_simulated``: the same architecture trained on the simulated stimuli, cached by a hash of (images, config);
  see :class:`~brain2img.diffusion.simulated.TinySimulatedBackbone`.
- ``sd``: a local diffusers folder of Stable Diffusion 1.x (``vae/``, ``unet/``, ``scheduler/``, optionally
  ``text_encoder/`` + ``tokenizer/`` for the ``""`` null embedding), conditioned on 77 x 768 tokens. The same loader
  reads Versatile Diffusion's image-variation UNet (``unet_subfolder="image_unet"``, ``n_tokens=257``,
  ``uncond="zeros"``): a ``UNet2DConditionModel`` whose cross-attention context is the 257 x 768 CLS-normalised CLIP
  image tokens, as MindEye1 uses it (dual-guided with ``text_image_ratio=0`` runs only the image transformers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.conditioner import Conditioner
from brain2img.diffusion.simulated import TinySimulatedBackbone
from brain2img.diffusion.tiny import TinyConfig, build_tiny

PRESETS = ("tiny", "tiny_simulated", "sd")
PATH_KEY = "model.backbone.path (command line: --model.init_args.backbone.path)"
SD_REQUIRED = {"vae": "config.json", "scheduler": "scheduler_config.json"}
NULL_MODES = ("auto", "text", "zeros")


def build_backbone(preset: str = "tiny", **kwargs: Any) -> LatentDiffusion:
    """Build a :class:`LatentDiffusion` backbone.

    Args:
        preset: ``tiny``, ``tiny_simulated`` or ``sd``.
        **kwargs: ``tiny``: any :class:`TinyConfig` field. ``tiny_simulated``: the same plus ``cache_dir``,
            ``images``/``features`` (train or load right away instead of in ``prepare``) and ``progress``.
            ``sd``: ``path`` (required), ``image_size`` (512), ``n_tokens`` (77), ``unet_subfolder`` (``unet``),
            ``uncond`` (``auto``/``text``/``zeros``).

    Raises:
        ValueError: unknown preset. TypeError: unknown setting. FileNotFoundError: missing or incomplete SD folder.
    """
    if preset == "tiny":
        return build_tiny(TinyConfig.from_dict(kwargs))
    if preset == "tiny_simulated":
        return TinySimulatedBackbone.build(**kwargs)
    if preset == "sd":
        return build_sd(**kwargs)
    raise ValueError(f"unknown backbone preset {preset!r} (model.backbone.preset); choose one of {PRESETS}")


def _check_sd_folder(path: Path, unet_subfolder: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"Stable Diffusion folder '{path}' not found: set {PATH_KEY} to a local diffusers "
                                f"folder with vae/, {unet_subfolder}/ and scheduler/ (nothing is downloaded)")
    for sub, cfg_file in {**SD_REQUIRED, unet_subfolder: "config.json"}.items():
        if not (path / sub / cfg_file).is_file():
            raise FileNotFoundError(f"Stable Diffusion folder '{path}' is incomplete: subfolder '{sub}/' (with "
                                    f"{cfg_file}) is missing; fix {PATH_KEY} or complete the folder "
                                    "(diffusers save_pretrained layout: vae/, unet/, scheduler/)")


def _sd_null_embedding(path: Path, n_tokens: int, uncond: str) -> torch.Tensor | None:
    """The text encoder's embedding of ``""`` (1, n_tokens, D), or None for zeros.

    ``uncond``: ``auto`` (the embedding when text_encoder/ and tokenizer/ exist, else zeros), ``text`` (required) or
    ``zeros``.
    """
    if uncond not in NULL_MODES:
        raise ValueError(f"model.backbone.uncond must be one of {NULL_MODES}, got {uncond!r}")
    has_text = (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir()
    if uncond == "text" and not has_text:
        raise FileNotFoundError(f"model.backbone.uncond is 'text' but '{path}' has no text_encoder/ and tokenizer/")
    if uncond == "zeros" or not has_text:
        return None
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder").eval()
    ids = tokenizer("", padding="max_length", max_length=n_tokens, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0]


def build_sd(path: str | Path | None = None, image_size: int = 512, n_tokens: int = 77, unet_subfolder: str = "unet",
             uncond: str = "auto") -> LatentDiffusion:
    """Load Stable Diffusion 1.x (or Versatile Diffusion's image UNet) from a local diffusers folder; conditions are
    ``(n_tokens, D)`` embeddings and the unconditional embedding follows ``uncond`` (see :func:`_sd_null_embedding`)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    if path is None:
        raise FileNotFoundError(f"the 'sd' backbone needs a local diffusers folder: set {PATH_KEY}")
    path = Path(path).expanduser()
    _check_sd_folder(path, unet_subfolder)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae").eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder=unet_subfolder)
    scheduler_config = dict(DDIMScheduler.load_config(path, subfolder="scheduler"))
    scheduler_config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    width = int(unet.config.cross_attention_dim)
    conditioner = Conditioner((n_tokens, width), n_tokens, width, mode="identity")
    null = _sd_null_embedding(path, n_tokens, uncond)
    if null is not None and tuple(null.shape[1:]) != (n_tokens, width):
        raise ValueError(f"text encoder in '{path}' gives null embeddings of shape {tuple(null.shape[1:])}, but the "
                         f"UNet expects ({n_tokens}, {width}) (model.backbone.n_tokens / unet cross_attention_dim)")
    return LatentDiffusion(vae, unet, scheduler_config, conditioner, image_size, null_tokens=null)
