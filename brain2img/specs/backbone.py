"""``model.backbone``: the shared latent-diffusion backbone as a preset plus its settings.

Which preset reads which field: ``tiny`` every :class:`~brain2img.diffusion.tiny.TinyConfig` field;
``tiny_simulated`` the same plus ``cache_dir`` and ``progress``; ``sd`` ``path``, ``image_size``, ``n_tokens``,
``unet_subfolder`` and ``uncond``. A field set for a preset that does not read it is refused, naming it, except
``cache_dir``/``progress``: ``tiny`` and ``sd`` ignore them, so that switching the preset of a config that sets the
cache folder (``--model.init_args.backbone.preset tiny`` on the quick start) needs no extra ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.simulated import DEFAULT_CACHE_DIR
from brain2img.diffusion.tiny import TinyConfig
from brain2img.presets import PresetSpec, plain, preset_spec

TINY_FIELDS = tuple(f.name for f in fields(TinyConfig))
SIMULATED_FIELDS = ("cache_dir", "progress")
SD_FIELDS = ("path", "image_size", "n_tokens", "unet_subfolder", "uncond")
READS = {"tiny": set(TINY_FIELDS), "tiny_simulated": {*TINY_FIELDS, *SIMULATED_FIELDS}, "sd": set(SD_FIELDS)}

# TinyConfig documents its fields in prose; one line each here
TINY_DOCS = {
    "image_size": "image side in pixels (tiny: 64, the simulated stimuli; sd: 512, 320 for the Osaka reference).",
    "in_channels": "tiny: image channels (3).",
    "latent_channels": "tiny: VAE latent channels (4).",
    "vae_channels": "tiny: VAE block widths; the latent side is image_size / 2 ** (len - 1) ([16, 32, 64]).",
    "vae_layers_per_block": "tiny: VAE ResNet layers per block (1).",
    "vae_norm_groups": "tiny: VAE GroupNorm groups (8).",
    "unet_channels": "tiny: UNet block widths ([32, 32, 64]).",
    "unet_attention": "tiny: cross-attention per UNet level, one flag per unet_channels entry ([false, false, true]).",
    "unet_layers_per_block": "tiny: UNet layers per block (1).",
    "unet_pooled_embedding": "tiny: add the mean condition token to the time embedding (FiLM-like; true).",
    "unet_head_dim": "tiny: width per attention head (16).",
    "unet_norm_groups": "tiny: UNet GroupNorm groups (8).",
    "cross_attention_dim": "tiny: width of the condition tokens (64).",
    "n_tokens": "condition tokens (tiny: 4, made by the conditioner; sd: 77; Versatile Diffusion image UNet: 257).",
    "condition_dim": "tiny: size of the condition vector the conditioner reads (1280: EfficientNet-Lite0 features).",
    "conditioner_hidden": "tiny: hidden width of the conditioner MLP (512).",
    "prediction_type": "tiny: epsilon or v_prediction (v_prediction).",
    "num_train_timesteps": "tiny: diffusion timesteps (1000).",
    "beta_schedule": "tiny: noise schedule (scaled_linear, SD 1.x).",
    "beta_start": "tiny: first beta (0.00085).",
    "beta_end": "tiny: last beta (0.012).",
    "vae_steps": "tiny_simulated training: VAE AdamW steps (400).",
    "vae_batch_size": "tiny_simulated training: VAE batch size (16).",
    "vae_crop": "tiny_simulated training: side of the random VAE training crops (32).",
    "vae_lr": "tiny_simulated training: VAE learning rate (0.002).",
    "kl_weight": "tiny_simulated training: weight of the VAE KL term (0.0001).",
    "unet_steps": "tiny_simulated training: UNet + conditioner steps (1000).",
    "unet_batch_size": "tiny_simulated training: UNet batch size (32).",
    "unet_lr": "tiny_simulated training: UNet learning rate (0.002).",
    "cond_dropout": "tiny_simulated training: share of conditions replaced by the learned null tokens (0.1).",
    "ema_decay": "tiny_simulated training: EMA decay of the UNet weights (0: off).",
    "min_snr_gamma": "tiny_simulated training: Min-SNR loss weighting gamma (1; 0: off).",
    "flip": "tiny_simulated training: random horizontal flips (true).",
    "warmup_steps": "tiny_simulated training: learning-rate warm-up steps (50).",
    "seed": "seed of the random weights (tiny) and of the training (tiny_simulated) (0).",
    "time_budget_s": "tiny_simulated training: cap on the run in seconds (null: none); a run cut short is not cached.",
    "vae_budget_fraction": "tiny_simulated training: share of time_budget_s for the VAE stage (0.25).",
}
EXTRA = (
    ("cache_dir", str, f"tiny_simulated: folder of the trained generators, one per hash of (training images, config) "
                       f"(null: {DEFAULT_CACHE_DIR}); ignored by tiny and sd."),
    ("progress", bool, "tiny_simulated: show the training progress (null: true); ignored by tiny and sd."),
    ("path", str, "sd (required): local diffusers folder with vae/, unet/ (or unet_subfolder), scheduler/ and "
                  "optionally text_encoder/ + tokenizer/ (nothing is downloaded)."),
    ("unet_subfolder", str, "sd: the UNet's subfolder (null: unet; Versatile Diffusion's image UNet: image_unet)."),
    ("uncond", str, "sd: unconditional embedding: auto (the text encoder's embedding of \"\" when the folder has one, "
                    "else zeros), text or zeros (null: auto)."),
)


@dataclass(frozen=True)
class _BackboneBase(PresetSpec):
    """Backbone behaviour on top of :class:`~brain2img.presets.PresetSpec`: which preset reads which field."""

    def __post_init__(self) -> None:
        super().__post_init__()
        wrong = sorted(set(self.overrides()) - READS[self.preset] - set(SIMULATED_FIELDS))
        if wrong:
            owners = {n: [p for p in READS if n in READS[p]] for n in wrong}
            detail = ", ".join(f"{n} ({'/'.join(owners[n])})" for n in wrong)
            raise ValueError(f"model.backbone: preset {self.preset!r} does not read {wrong}: they are settings of "
                             f"other presets ({detail}); remove them or change model.backbone.preset")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~brain2img.diffusion.presets.build_backbone` (the fields its preset reads)."""
        return {"preset": self.preset, **{k: v for k, v in self.overrides().items() if k in READS[self.preset]}}

    def to_dict(self) -> dict[str, Any]:
        """Plain :meth:`kwargs` (tuples as lists), the hyperparameter stored in checkpoints."""
        return plain(self.kwargs())

    def config(self, **fixed: Any) -> TinyConfig:
        """The :class:`TinyConfig` of a ``tiny`` / ``tiny_simulated`` backbone."""
        if self.preset not in ("tiny", "tiny_simulated"):
            raise ValueError(f"model.backbone: preset {self.preset!r} has no TinyConfig")
        return TinyConfig.from_dict({**{k: v for k, v in self.overrides().items() if k in TINY_FIELDS}, **fixed})

    def build(self) -> Any:
        """The :class:`~brain2img.diffusion.backbone.LatentDiffusion` backbone."""
        return build_backbone(**self.kwargs())


BackboneSpec = preset_spec(
    "BackboneSpec", TinyConfig, {p: {} for p in READS}, module=__name__, owner="model.backbone",
    summary="The shared latent-diffusion backbone (build_backbone): a preset plus its settings; every setting left "
            "null keeps the preset's value. tiny reads the TinyConfig fields, tiny_simulated those plus cache_dir and "
            "progress, sd path, image_size, n_tokens, unet_subfolder and uncond; a setting of another preset is "
            "refused (cache_dir and progress are ignored).",
    preset_doc="tiny (random weights, offline, milliseconds), tiny_simulated (the tiny architecture trained on the "
               "simulated stimuli and cached) or sd (Stable Diffusion 1.x / Versatile Diffusion from a local folder).",
    extra=EXTRA, docs=TINY_DOCS, base=_BackboneBase)
