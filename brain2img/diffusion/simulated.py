"""The ``tiny_simulated`` backbone: the tiny architecture whose weights are trained on the benchmark's stimuli.

The object is built with random weights (so a checkpoint can restore it without training); :meth:`prepare` then
loads the generator cached for these training images and config, or trains it once (about two minutes on CPU).
Methods call ``backbone.prepare(datamodule, image_encoder)`` before fitting when the backbone has that method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.generator import load_or_train_generator
from brain2img.diffusion.tiny import TinyConfig, build_tiny

DEFAULT_CACHE_DIR = ".cache/brain2img/generator"
TRAIN_SPLITS = ("train", "val")


def collect_stimulus_images(source: Any, splits: tuple[str, ...] = TRAIN_SPLITS) -> torch.Tensor:
    """The distinct stimulus images a generator may train on, ``(N, 3, H, W)`` in ``[0, 1]``.

    ``source`` is an image tensor / array or a datamodule with ``stimulus_images(split)`` (train + validation
    stimuli, never test).
    """
    if isinstance(source, torch.Tensor | np.ndarray):
        return torch.as_tensor(source).float()
    if hasattr(source, "stimulus_images"):
        images, _ = source.stimulus_images(list(splits))  # the datamodule interface: (images, stimulus ids)
        if len(images) == 0:
            raise ValueError(f"{type(source).__name__}.stimulus_images gave no images for splits {splits}")
        return torch.as_tensor(images).float()
    raise TypeError(f"cannot get training images from {type(source).__name__}: pass an image tensor or a datamodule "
                    "with stimulus_images(split)")


class TinySimulatedBackbone(LatentDiffusion):
    """Tiny backbone trained on the simulated stimuli (train + validation only), loaded from the cache when present.

    Attributes:
        config: the :class:`TinyConfig` (architecture and training recipe).
        cache_dir: where trained generators live, one folder per hash of (training images, config).
        is_trained: whether weights were trained or loaded (``False`` right after construction).
    """

    config: TinyConfig
    cache_dir: Path
    is_trained: bool
    progress: bool

    @classmethod
    def build(
        cls,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        progress: bool = True,
        **config: Any,
    ) -> TinySimulatedBackbone:
        """Build it; with ``images`` and ``features`` given, load or train the weights right away."""
        cfg = TinyConfig.from_dict(config)
        model = build_tiny(cfg, cls=cls)
        model.config, model.cache_dir, model.is_trained, model.progress = cfg, Path(cache_dir), False, progress
        if images is not None:
            if features is None:
                raise ValueError("tiny_simulated: 'images' given without 'features' (the conditions, one per image)")
            model.load_trained(images, features)
        return model

    def load_trained(self, images: torch.Tensor, features: torch.Tensor) -> None:
        """Load (or train and cache) the generator for these images and features into this module."""
        trained = load_or_train_generator(images, features, self.config, self.cache_dir, progress=self.progress)
        device = self.device
        self.load_state_dict(trained.state_dict())
        self.vae.register_to_config(scaling_factor=trained.scaling_factor)
        self.train_stats = getattr(trained, "train_stats", {})
        self.is_trained = True
        self.to(device).eval().requires_grad_(False)

    def prepare(self, datamodule: Any, image_encoder: nn.Module, batch_size: int = 32) -> None:
        """Train or load the weights from the datamodule's train + validation stimuli and their features.

        Args:
            datamodule: see :func:`collect_stimulus_images`.
            image_encoder: module whose output dict has ``pooled`` (the conditioning features, ``condition_dim``).
            batch_size: images per encoder call.
        """
        images = collect_stimulus_images(datamodule)
        device = next(image_encoder.parameters()).device
        with torch.no_grad():
            pooled = [image_encoder(images[i : i + batch_size].to(device))["pooled"].float().cpu()
                      for i in range(0, len(images), batch_size)]
        self.load_trained(images, torch.cat(pooled))
