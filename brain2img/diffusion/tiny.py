"""The tiny latent-diffusion architecture: config dataclass and builder (random weights, offline, milliseconds)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.conditioner import Conditioner


@dataclass
class TinyConfig:
    """Architecture of the tiny backbone and the recipe that trains it on simulated stimuli (plain values only).

    Architecture: images ``image_size``² with ``in_channels`` -> VAE latents ``latent_channels`` x
    ``image_size / 2**(len(vae_channels) - 1)``²; a UNet with ``unet_channels`` per level attends (at the levels
    flagged in ``unet_attention`` and in the middle block) to ``n_tokens`` tokens of width ``cross_attention_dim``
    (with ``unet_pooled_embedding`` the mean token is also added to the time embedding, a global FiLM-like
    condition of every ResNet block); the tokens are made by the conditioner from a ``condition_dim`` vector (1280:
    EfficientNet-Lite0 pooled features).

    Training (``brain2img.diffusion.generator``): ``vae_steps`` AdamW steps on random ``vae_crop``² patches (L1 +
    MSE + ``kl_weight`` KL), then ``unet_steps`` on latents conditioned on the features with ``cond_dropout`` of
    the conditions replaced by the learned null tokens and Min-SNR loss weights (``min_snr_gamma``, 0 = off);
    cosine learning-rate decay; ``time_budget_s`` (``None``, the default: no cap) caps the whole run (split
    ``vae_budget_fraction`` / rest between
    the stages; a stage that reaches its share stops early with a warning).
    """

    image_size: int = 64
    in_channels: int = 3
    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    unet_channels: tuple[int, ...] = (32, 32, 64)
    unet_attention: tuple[bool, ...] = (False, False, True)
    unet_layers_per_block: int = 1
    unet_pooled_embedding: bool = True
    unet_head_dim: int = 16
    unet_norm_groups: int = 8
    cross_attention_dim: int = 64
    n_tokens: int = 4
    condition_dim: int = 1280
    conditioner_hidden: int = 512
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    vae_steps: int = 400
    vae_batch_size: int = 16
    vae_crop: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-4
    unet_steps: int = 1000
    unet_batch_size: int = 32
    unet_lr: float = 2e-3
    cond_dropout: float = 0.1
    ema_decay: float = 0.0
    min_snr_gamma: float = 1.0
    flip: bool = True
    warmup_steps: int = 50
    seed: int = 0
    time_budget_s: float | None = None
    vae_budget_fraction: float = 0.25

    def __post_init__(self) -> None:
        self.vae_channels = tuple(int(c) for c in self.vae_channels)
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        self.unet_attention = tuple(bool(a) for a in self.unet_attention)
        if len(self.unet_attention) != len(self.unet_channels):
            raise ValueError(f"unet_attention {self.unet_attention} needs one flag per unet_channels level "
                             f"{self.unet_channels}")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {self.prediction_type!r}")
        if self.image_size % 2 ** (len(self.vae_channels) - 1):
            raise ValueError(f"image_size {self.image_size} not divisible by the VAE downsampling "
                             f"{2 ** (len(self.vae_channels) - 1)} (from vae_channels {self.vae_channels})")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | TinyConfig | None) -> TinyConfig:
        """Build from a dict of field values; unknown keys raise ``TypeError`` listing the valid ones."""
        if isinstance(values, TinyConfig):
            return values
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"unknown tiny backbone setting(s) {unknown}; valid settings: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of every setting."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def scheduler_config(self) -> dict[str, Any]:
        """DDIM-style noise schedule config (SD 1.x conventions)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": self.beta_schedule,
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
            "prediction_type": self.prediction_type,
        }


def build_tiny(
    config: TinyConfig | dict[str, Any] | None = None, scaling_factor: float = 1.0, cls: type = LatentDiffusion
) -> LatentDiffusion:
    """Build the tiny backbone with random weights (seeded by ``config.seed``; the global RNG is left untouched).

    ``cls`` is the :class:`LatentDiffusion` (sub)class to instantiate.
    """
    cfg = TinyConfig.from_dict(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        n = len(cfg.vae_channels)
        vae = AutoencoderKL(
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=cfg.vae_channels,
            layers_per_block=cfg.vae_layers_per_block,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.vae_norm_groups,
            sample_size=cfg.image_size,
            scaling_factor=scaling_factor,
            mid_block_add_attention=False,
        )
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.unet_attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.unet_attention))
        side = cfg.image_size // 2 ** (n - 1)
        unet = UNet2DConditionModel(
            sample_size=side,
            in_channels=cfg.latent_channels,
            out_channels=cfg.latent_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=cfg.unet_channels,
            layers_per_block=cfg.unet_layers_per_block,
            cross_attention_dim=cfg.cross_attention_dim,
            attention_head_dim=tuple(max(1, c // cfg.unet_head_dim) for c in cfg.unet_channels),
            norm_num_groups=cfg.unet_norm_groups,
            class_embed_type="projection" if cfg.unet_pooled_embedding else None,
            projection_class_embeddings_input_dim=cfg.cross_attention_dim if cfg.unet_pooled_embedding else None,
        )
        conditioner = Conditioner(
            (cfg.condition_dim,), cfg.n_tokens, cfg.cross_attention_dim, hidden_dim=cfg.conditioner_hidden
        )
        null = torch.randn(1, cfg.n_tokens, cfg.cross_attention_dim) * 0.02
    return cls(vae, unet, cfg.scheduler_config(), conditioner, cfg.image_size, null, learn_null=True)
