"""MindEye1's fMRI encoders: the high-level ``BrainNetwork`` (voxel2clip + projector) and the low-level branch.

- :class:`BrainNetwork`: voxels ``(B, n_voxels)`` -> an MLP backbone whose output is read as CLIP ViT-L/14 hidden
  tokens ``(B, 257, 768)`` (the diffusion prior's condition) and a per-token projector output ``(B, 257, 768)``
  (used by the contrastive losses and retrieval). Paper size for subject 1 (15,724 voxels): 947,579,904 parameters.
- :class:`LowLevelBranch` (``Voxel2StableDiffusionModel``): voxels -> a ``(64, 16, 16)`` feature map -> a diffusers
  VAE-style ``Decoder`` -> an SD VAE latent ``(B, 4, 64, 64)`` for the blurry reconstruction.

Module names mirror the reference (``lin0``, ``mlp.N``, ``lin1``, ``projector``; ``norm``, ``upsampler``,
``maps_projector``) so that MindEye checkpoints map key for key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from brain2img.presets import config_from_preset


def _check_positive_ints(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: '{name}' must be a positive integer, got {value!r}")


def _check_dropout(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{owner}: '{name}' must be in [0, 1), got {value!r}")


def _check_voxels(x: torch.Tensor, n_voxels: int, owner: str) -> None:
    if x.ndim != 2 or x.shape[1] != n_voxels:
        raise ValueError(f"{owner}: expected voxels of shape (B, n_voxels={n_voxels}), got {tuple(x.shape)}")


@dataclass
class MindEyeConfig:
    """Sizes of :class:`BrainNetwork` (defaults: MindEye1's subject-1 model).

    Attributes:
        n_voxels: input voxels (nsdgeneral ROI; subj01 15,724).
        h: backbone width.
        n_blocks: residual blocks.
        clip_tokens: output tokens (CLIP ViT-L/14 hidden states: 257).
        clip_dim: token width (768).
        proj_hidden: projector hidden width (2048).
        drop_in: dropout after ``lin0``.
        drop_block: dropout in each residual block.
    """

    n_voxels: int = 15724
    h: int = 4096
    n_blocks: int = 4
    clip_tokens: int = 257
    clip_dim: int = 768
    proj_hidden: int = 2048
    drop_in: float = 0.5
    drop_block: float = 0.15

    def __post_init__(self) -> None:
        _check_positive_ints(
            "MindEyeConfig", n_voxels=self.n_voxels, h=self.h, n_blocks=self.n_blocks,
            clip_tokens=self.clip_tokens, clip_dim=self.clip_dim, proj_hidden=self.proj_hidden,
        )
        _check_dropout("MindEyeConfig", drop_in=self.drop_in, drop_block=self.drop_block)


MINDEYE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_voxels": 15724, "h": 4096, "n_blocks": 4, "clip_tokens": 257, "clip_dim": 768, "proj_hidden": 2048,
              "drop_in": 0.5, "drop_block": 0.15},
    "tiny": {"n_voxels": 64, "h": 64, "n_blocks": 1, "clip_tokens": 4, "clip_dim": 16, "proj_hidden": 32,
             "drop_in": 0.5, "drop_block": 0.15},
}


def mindeye_config(preset: str = "tiny", **overrides: Any) -> MindEyeConfig:
    """Build a :class:`MindEyeConfig` from a preset of ``MINDEYE_PRESETS`` with field overrides.

    ``mindeye_config("paper", n_voxels=14278)`` is subject 2's model; ``"tiny"`` (``h=64``, one block) is for tests,
    with ``n_voxels`` / ``clip_tokens`` / ``clip_dim`` set as needed.

    Raises:
        ValueError: for an unknown preset or field name.
    """
    return config_from_preset(MindEyeConfig, MINDEYE_PRESETS, "mindeye_config", preset, overrides)


class BrainNetwork(nn.Module):
    """MindEye1 ``BrainNetwork`` (voxel2clip, LayerNorm / GELU variant) with its retrieval projector.

    ``lin0 = Linear(in_dim, h) -> LayerNorm -> GELU -> Dropout(drop_in)``; ``n_blocks`` residual blocks
    ``x = x + [Linear(h, h) -> LayerNorm -> GELU -> Dropout(drop_block)](x)``; ``lin1 = Linear(h, out_dim)``, read as
    ``(clip_tokens, clip_dim)`` tokens. The projector acts per token: ``LN(clip_dim) -> GELU -> Linear(clip_dim,
    proj_hidden) -> LN -> GELU -> Linear(proj_hidden, proj_hidden) -> LN -> GELU -> Linear(proj_hidden, clip_dim)``.

    Args:
        in_dim: input voxels.
        out_dim: backbone output width; must equal ``clip_tokens * clip_dim``.
        h: backbone width.
        n_blocks: residual blocks.
        drop_in: dropout after ``lin0``.
        drop_block: dropout inside each block.
        clip_tokens: output tokens.
        clip_dim: token width.
        proj_hidden: projector hidden width.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 257 * 768,
        h: int = 4096,
        n_blocks: int = 4,
        drop_in: float = 0.5,
        drop_block: float = 0.15,
        clip_tokens: int = 257,
        clip_dim: int = 768,
        proj_hidden: int = 2048,
    ) -> None:
        super().__init__()
        _check_positive_ints("BrainNetwork", in_dim=in_dim, out_dim=out_dim, h=h, n_blocks=n_blocks,
                             clip_tokens=clip_tokens, clip_dim=clip_dim, proj_hidden=proj_hidden)
        _check_dropout("BrainNetwork", drop_in=drop_in, drop_block=drop_block)
        if out_dim != clip_tokens * clip_dim:
            raise ValueError(
                f"BrainNetwork: 'out_dim' ({out_dim}) must equal clip_tokens * clip_dim "
                f"({clip_tokens} * {clip_dim} = {clip_tokens * clip_dim})"
            )
        self.in_dim, self.clip_tokens, self.clip_dim = in_dim, clip_tokens, clip_dim
        self.lin0 = nn.Sequential(nn.Linear(in_dim, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(drop_in))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(drop_block)) for _ in range(n_blocks)
        )
        self.lin1 = nn.Linear(h, out_dim)
        self.projector = nn.Sequential(
            nn.LayerNorm(clip_dim),
            nn.GELU(),
            nn.Linear(clip_dim, proj_hidden),
            nn.LayerNorm(proj_hidden),
            nn.GELU(),
            nn.Linear(proj_hidden, proj_hidden),
            nn.LayerNorm(proj_hidden),
            nn.GELU(),
            nn.Linear(proj_hidden, clip_dim),
        )

    @classmethod
    def from_config(cls, config: MindEyeConfig) -> BrainNetwork:
        """Build from a :class:`MindEyeConfig`."""
        return cls(
            config.n_voxels, config.clip_tokens * config.clip_dim, config.h, config.n_blocks, config.drop_in,
            config.drop_block, config.clip_tokens, config.clip_dim, config.proj_hidden,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Voxels ``(B, in_dim)`` -> ``(backbone (B, clip_tokens, clip_dim), projector (B, clip_tokens, clip_dim))``.

        The backbone tokens condition the diffusion prior; the projector tokens go to the contrastive losses.
        """
        _check_voxels(x, self.in_dim, "BrainNetwork")
        x = self.lin0(x)
        for block in self.mlp:
            x = x + block(x)
        tokens = self.lin1(x).reshape(x.shape[0], self.clip_tokens, self.clip_dim)
        return tokens, self.projector(tokens)


@dataclass
class LowLevelConfig:
    """Sizes of :class:`LowLevelBranch` (defaults: MindEye1's ``Voxel2StableDiffusionModel``, ``ups_mode='4x'``).

    The seed map ``(seed_channels, seed_side, seed_side)`` is upsampled ``len(block_out_channels) - 1`` times by 2,
    so the latent side is ``seed_side * 2 ** (len(block_out_channels) - 1)`` (16 * 4 = 64).

    Attributes:
        n_voxels: input voxels.
        h: MLP width.
        n_blocks: residual blocks.
        latent_shape: output latent ``(C, H, W)``; must match the decoder (``H == W ==`` the latent side).
        seed_channels: channels of the map the MLP produces (64).
        seed_side: side of that map (16).
        block_out_channels: the decoder's up-block widths (``(64, 128, 256)``).
        layers_per_block: decoder ``layers_per_block`` (1).
        norm_num_groups: decoder GroupNorm groups (32); must divide every width.
        drop_in: dropout after ``lin0``.
        drop_block: dropout in each residual block.
        contrastive_dim: width of the optional ``maps_projector`` (1x1 convs for the low-level contrastive loss,
            512 in MindEye); ``None`` leaves it out.
    """

    n_voxels: int = 15724
    h: int = 4096
    n_blocks: int = 4
    latent_shape: tuple[int, int, int] = (4, 64, 64)
    seed_channels: int = 64
    seed_side: int = 16
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    norm_num_groups: int = 32
    drop_in: float = 0.5
    drop_block: float = 0.25
    contrastive_dim: int | None = None

    def __post_init__(self) -> None:
        self.latent_shape = tuple(self.latent_shape)
        self.block_out_channels = tuple(self.block_out_channels)
        _check_positive_ints(
            "LowLevelConfig", n_voxels=self.n_voxels, h=self.h, n_blocks=self.n_blocks,
            seed_channels=self.seed_channels, seed_side=self.seed_side, layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
        )
        if self.contrastive_dim is not None:
            _check_positive_ints("LowLevelConfig", contrastive_dim=self.contrastive_dim)
        _check_dropout("LowLevelConfig", drop_in=self.drop_in, drop_block=self.drop_block)
        if len(self.latent_shape) != 3:
            raise ValueError(f"LowLevelConfig: 'latent_shape' must be (C, H, W), got {self.latent_shape}")
        _check_positive_ints("LowLevelConfig", **{f"latent_shape[{i}]": v for i, v in enumerate(self.latent_shape)})
        if not self.block_out_channels:
            raise ValueError("LowLevelConfig: 'block_out_channels' must not be empty")
        _check_positive_ints(
            "LowLevelConfig", **{f"block_out_channels[{i}]": v for i, v in enumerate(self.block_out_channels)}
        )
        for width in self.block_out_channels:
            if width % self.norm_num_groups != 0:
                raise ValueError(
                    f"LowLevelConfig: 'norm_num_groups' ({self.norm_num_groups}) must divide every "
                    f"'block_out_channels' entry, got {self.block_out_channels}"
                )
        side = self.decoded_side
        if self.latent_shape[1:] != (side, side):
            raise ValueError(
                f"LowLevelConfig: 'latent_shape' {self.latent_shape} does not match the decoder output "
                f"(C, {side}, {side}) = seed_side {self.seed_side} * 2 ** (len(block_out_channels) - 1)"
            )

    @property
    def decoded_side(self) -> int:
        """Side of the decoder output: ``seed_side * 2 ** (len(block_out_channels) - 1)``."""
        return self.seed_side * 2 ** (len(self.block_out_channels) - 1)


LOW_LEVEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_voxels": 15724, "h": 4096, "n_blocks": 4, "latent_shape": (4, 64, 64), "seed_channels": 64,
              "seed_side": 16, "block_out_channels": (64, 128, 256), "layers_per_block": 1, "norm_num_groups": 32,
              "drop_in": 0.5, "drop_block": 0.25, "contrastive_dim": None},
    "tiny": {"n_voxels": 64, "h": 32, "n_blocks": 1, "latent_shape": (4, 8, 8), "seed_channels": 8, "seed_side": 4,
             "block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4, "drop_in": 0.5,
             "drop_block": 0.25, "contrastive_dim": None},
}


def low_level_config(preset: str = "tiny", **overrides: Any) -> LowLevelConfig:
    """Build a :class:`LowLevelConfig` from a preset of ``LOW_LEVEL_PRESETS`` with field overrides.

    Raises:
        ValueError: for an unknown preset or field name.
    """
    return config_from_preset(LowLevelConfig, LOW_LEVEL_PRESETS, "low_level_config", preset, overrides)


class LowLevelBranch(nn.Module):
    """MindEye1's low-level branch (``Voxel2StableDiffusionModel``): voxels -> an SD VAE latent.

    ``lin0 = Linear(in_dim, h, bias=False) -> LN -> SiLU -> Dropout(drop_in)``; ``n_blocks`` residual blocks
    ``Linear(h, h, bias=False) -> LN -> SiLU -> Dropout(drop_block)``; ``lin1 = Linear(h, seed_channels *
    seed_side ** 2, bias=False)`` reshaped to ``(seed_channels, seed_side, seed_side)``; ``norm = GroupNorm(1,
    seed_channels)``; ``upsampler`` = diffusers ``Decoder`` (``UpDecoderBlock2D`` blocks) to ``latent_shape``.
    The target is the SD VAE latent of the image (scaled by 0.18215); MindEye trains with ``L1 / 0.18215``.

    Args:
        in_dim: input voxels.
        h: MLP width.
        n_blocks: residual blocks.
        latent_shape: output ``(C, H, W)``; ``H == W`` must equal ``seed_side * 2 ** (len(block_out_channels) - 1)``.
        **kwargs: the other :class:`LowLevelConfig` fields (``seed_channels``, ``seed_side``, ``block_out_channels``,
            ``layers_per_block``, ``norm_num_groups``, ``drop_in``, ``drop_block``, ``contrastive_dim``).
    """

    def __init__(
        self, in_dim: int, h: int = 4096, n_blocks: int = 4, latent_shape: tuple[int, int, int] = (4, 64, 64),
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder  # heavy import, only when the branch is built

        known = {f.name for f in fields(LowLevelConfig)} - {"n_voxels", "h", "n_blocks", "latent_shape"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"LowLevelBranch: unknown argument(s) {unknown}; expected some of {sorted(known)}")
        c = LowLevelConfig(n_voxels=in_dim, h=h, n_blocks=n_blocks, latent_shape=latent_shape, **kwargs)
        self.config = c
        self.lin0 = nn.Sequential(
            nn.Linear(c.n_voxels, c.h, bias=False), nn.LayerNorm(c.h), nn.SiLU(), nn.Dropout(c.drop_in)
        )
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(c.h, c.h, bias=False), nn.LayerNorm(c.h), nn.SiLU(), nn.Dropout(c.drop_block))
            for _ in range(c.n_blocks)
        )
        self.lin1 = nn.Linear(c.h, c.seed_channels * c.seed_side**2, bias=False)
        self.norm = nn.GroupNorm(1, c.seed_channels)
        self.upsampler = Decoder(
            in_channels=c.seed_channels,
            out_channels=c.latent_shape[0],
            up_block_types=("UpDecoderBlock2D",) * len(c.block_out_channels),
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups,
        )
        if c.contrastive_dim is None:
            self.maps_projector: nn.Module = nn.Identity()
        else:
            d = c.contrastive_dim
            self.maps_projector = nn.Sequential(
                nn.Conv2d(c.seed_channels, d, 1, bias=False), nn.GroupNorm(1, d), nn.ReLU(),
                nn.Conv2d(d, d, 1, bias=False), nn.GroupNorm(1, d), nn.ReLU(),
                nn.Conv2d(d, d, 1),
            )

    @classmethod
    def from_config(cls, config: LowLevelConfig) -> LowLevelBranch:
        """Build from a :class:`LowLevelConfig`."""
        extra = {f.name: getattr(config, f.name) for f in fields(config)}
        for name in ("n_voxels", "h", "n_blocks", "latent_shape"):
            extra.pop(name)
        return cls(config.n_voxels, config.h, config.n_blocks, config.latent_shape, **extra)

    def seed_map(self, x: torch.Tensor) -> torch.Tensor:
        """Voxels ``(B, n_voxels)`` -> the normalised seed map ``(B, seed_channels, seed_side, seed_side)``."""
        c = self.config
        _check_voxels(x, c.n_voxels, "LowLevelBranch")
        x = self.lin0(x)
        for block in self.mlp:
            x = x + block(x)
        return self.norm(self.lin1(x).reshape(x.shape[0], c.seed_channels, c.seed_side, c.seed_side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Voxels ``(B, n_voxels)`` -> latent ``(B, *latent_shape)``."""
        return self.upsampler(self.seed_map(x))

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent and the projected seed-map features ``(B, seed_side ** 2, contrastive_dim or seed_channels)``
        (MindEye's ``return_transformer_feats``), for the low-level contrastive loss."""
        seed = self.seed_map(x)
        return self.upsampler(seed), self.maps_projector(seed).flatten(2).transpose(1, 2)
