"""The shared latent-diffusion backbone: conditioning, the diffusers wrapper, presets and the tiny generator."""

from __future__ import annotations

from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.conditioner import Conditioner
from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.tiny import TinyConfig

__all__ = ["Conditioner", "LatentDiffusion", "TinyConfig", "build_backbone"]
