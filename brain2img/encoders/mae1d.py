"""One 1-D masked autoencoder for EEG and fMRI: DreamDiffusion's ``eeg_encoder`` / ``MAEforEEG`` and MinD-Vis /
DC-MAE's ``fmri_encoder`` / ``MAEforFMRI`` are the same network on different inputs.

Tokens are patches along the last axis over all channels: ``Conv1d(n_channels -> embed_dim, kernel=stride=
patch_size)`` turns ``(B, C, T)`` into ``T / patch_size`` tokens, plus fixed sine-cosine positions and a CLS token
for the masked path. EEG: ``C`` electrodes, ``T`` time samples (DreamDiffusion: 128 x 512, patch 4). fMRI: one
channel, ``T`` the padded voxel count (MinD-Vis: ``Conv1d(1 -> 1024, 16, 16)``; see
:mod:`brain2img.encoders.fmri_mae`).
The autoencoder masks a random subset of tokens per sample, encodes the kept ones, and a light decoder predicts the
raw patch values; the loss is the MSE over masked tokens only.

Parameter names mirror the reference (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm``;
``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.N.*``, ``decoder_norm``, ``decoder_pred``);
the autoencoder's encoder weights sit under the ``encoder.`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from brain2img.encoders.pos_embed import get_1d_sincos_pos_embed
from brain2img.encoders.transformer import TransformerBlock
from brain2img.presets import config_from_preset


@dataclass
class MAE1DConfig:
    """Sizes of a 1-D encoder and its masked autoencoder (defaults: the DreamDiffusion paper model).

    Attributes:
        n_channels: input channels ``C`` (EEG electrodes; 1 for fMRI).
        n_times: samples along the patched axis ``T`` (EEG time samples; fMRI padded voxels); must be divisible by
            ``patch_size``.
        patch_size: samples per token.
        embed_dim: encoder width.
        depth: encoder blocks.
        num_heads: encoder heads; must divide ``embed_dim``.
        mlp_ratio: MLP hidden width / block width (both encoder and decoder, as in the reference).
        decoder_embed_dim: decoder width.
        decoder_depth: decoder blocks.
        decoder_num_heads: decoder heads; must divide ``decoder_embed_dim``.
        mask_ratio: fraction of tokens masked in pre-training, in ``[0, 1)`` (paper 0.75; the reference code's
            config default is 0.1).
    """

    n_channels: int = 128
    n_times: int = 512
    patch_size: int = 4
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 1.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mask_ratio: float = 0.75

    def __post_init__(self) -> None:
        for name in (
            "n_channels",
            "n_times",
            "patch_size",
            "embed_dim",
            "depth",
            "num_heads",
            "decoder_embed_dim",
            "decoder_depth",
            "decoder_num_heads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MAE1DConfig: '{name}' must be a positive integer, got {value!r}")
        if self.n_times % self.patch_size != 0:
            raise ValueError(
                f"MAE1DConfig: 'n_times' ({self.n_times}) must be divisible by 'patch_size' ({self.patch_size})"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"MAE1DConfig: 'num_heads' ({self.num_heads}) must divide 'embed_dim' ({self.embed_dim})")
        if self.decoder_embed_dim % self.decoder_num_heads != 0:
            raise ValueError(
                f"MAE1DConfig: 'decoder_num_heads' ({self.decoder_num_heads}) must divide "
                f"'decoder_embed_dim' ({self.decoder_embed_dim})"
            )
        for name in ("embed_dim", "decoder_embed_dim"):
            value = getattr(self, name)
            if value % 2 != 0:
                raise ValueError(f"MAE1DConfig: '{name}' must be even (sine-cosine positions), got {value}")
        if not self.mlp_ratio > 0 or int(min(self.embed_dim, self.decoder_embed_dim) * self.mlp_ratio) < 1:
            raise ValueError(f"MAE1DConfig: 'mlp_ratio' must give a non-empty MLP, got {self.mlp_ratio!r}")
        _check_mask_ratio(self.mask_ratio, "MAE1DConfig: 'mask_ratio'")

    @property
    def n_tokens(self) -> int:
        """Number of temporal tokens, ``n_times // patch_size``."""
        return self.n_times // self.patch_size


EEG_MAE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "n_channels": 128,
        "n_times": 512,
        "patch_size": 4,
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 1.0,
        "decoder_embed_dim": 512,
        "decoder_depth": 8,
        "decoder_num_heads": 16,
        "mask_ratio": 0.75,
    },
    "tiny": {
        "n_channels": 32,
        "n_times": 64,
        "patch_size": 4,
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "decoder_embed_dim": 32,
        "decoder_depth": 1,
        "decoder_num_heads": 4,
        "mask_ratio": 0.75,
    },
}


def eeg_mae_config(preset: str = "tiny", **overrides: Any) -> MAE1DConfig:
    """Build a config from a named preset, with field overrides.

    Args:
        preset: a key of ``EEG_MAE_PRESETS`` (``"paper"`` or ``"tiny"``).
        **overrides: ``MAE1DConfig`` fields to replace.

    Raises:
        ValueError: for an unknown preset or an unknown field name.
    """
    return config_from_preset(MAE1DConfig, EEG_MAE_PRESETS, "eeg_mae_config", preset, overrides)


def _check_mask_ratio(mask_ratio: float, where: str) -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"{where} must be in [0, 1), got {mask_ratio!r}")


def _init_linear_and_norm(module: nn.Module) -> None:
    """MAE init: xavier-uniform Linear weights with zero bias; LayerNorm weight 1, bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _fixed_pos_embed(dim: int, length: int) -> nn.Parameter:
    """Frozen ``(1, length + 1, dim)`` sine-cosine positions (row 0 for CLS), a parameter as in the reference."""
    return nn.Parameter(get_1d_sincos_pos_embed(dim, length, cls_token=True).unsqueeze(0), requires_grad=False)


class PatchEmbed1D(nn.Module):
    """Temporal patches over all channels: ``(B, C, T) -> (B, T // patch_size, embed_dim)``.

    Args:
        n_channels: input channels ``C``.
        patch_size: time samples per token (kernel and stride of the convolution).
        embed_dim: token width.
    """

    def __init__(self, n_channels: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv1d(n_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, C, T)`` into ``(B, T // patch_size, embed_dim)``."""
        return self.proj(x).transpose(1, 2)


class SignalEncoder(nn.Module):
    """The 1-D encoder (DreamDiffusion ``eeg_encoder``, MinD-Vis ``fmri_encoder``): patch embedding, fixed positions,
    ViT blocks and a final LayerNorm.

    ``forward`` encodes every token (no masking, no CLS in the output), as the conditioning encoder does;
    ``forward_masked`` is the MAE encoder path (random token masking, CLS prepended).

    The reference ``eeg_encoder`` also holds a ``mask_token`` of width ``embed_dim`` that nothing uses (it is never
    loaded from an MAE checkpoint, whose mask token has the decoder width). It is kept by default so that the
    parameter count (151,902,208 for the paper sizes) and state-dict keys match the reference. The autoencoder builds
    its encoder without it. Loading tolerates that one key either way: a missing ``mask_token`` keeps the current
    value, an extra one is ignored when this encoder has none; every other key is checked as usual.

    Args:
        config: model sizes.
        reference_mask_token: keep the unused reference ``mask_token``.
    """

    def __init__(self, config: MAE1DConfig, *, reference_mask_token: bool = True) -> None:
        super().__init__()
        self.config = config
        self.n_tokens = config.n_tokens
        self.embed_dim = config.embed_dim
        self.patch_embed = PatchEmbed1D(config.n_channels, config.patch_size, config.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = _fixed_pos_embed(config.embed_dim, config.n_tokens)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.embed_dim, config.num_heads, config.mlp_ratio, qkv_bias=True)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.embed_dim)
        if reference_mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        else:
            self.register_parameter("mask_token", None)
        self._init_weights()
        self.register_load_state_dict_pre_hook(_tolerate_mask_token)

    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))  # like a Linear over the flattened (C * patch) input
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_linear_and_norm)
        if self.mask_token is not None:  # drawn last: the other weights match an encoder built without it
            nn.init.normal_(self.mask_token, std=0.02)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(B, n_channels, n_times)``."""
        expected = (self.config.n_channels, self.config.n_times)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"SignalEncoder: expected input of shape (B, n_channels={expected[0]}, n_times={expected[1]}), "
                f"got {tuple(x.shape)}"
            )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.patch_embed(x) + self.pos_embed[:, 1:, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode all tokens: ``(B, n_channels, n_times) -> (B, n_tokens, embed_dim)``."""
        h = self._embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward_masked(
        self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None,
        before_norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MAE encoder path: mask random tokens per sample, prepend CLS, encode the kept tokens.

        Each sample sorts uniform noise; the ``int(L * (1 - mask_ratio))`` tokens with the smallest noise are kept.

        Args:
            x: input ``(B, n_channels, n_times)``.
            mask_ratio: fraction of tokens to mask, in ``[0, 1)``.
            generator: random generator for the noise (on ``x.device``); ``None`` uses the global one.
            before_norm: applied to the encoded tokens ``(B, 1 + len_keep, embed_dim)`` before the final norm
                (DC-MAE stage 2 puts its cross-attention there).

        Returns:
            ``latent`` ``(B, 1 + len_keep, embed_dim)`` (CLS first, kept tokens in shuffled order), ``mask``
            ``(B, L)`` float32 with 1 = masked, 0 = kept, and ``ids_restore`` ``(B, L)`` (argsort of the shuffle).
        """
        _check_mask_ratio(mask_ratio, "SignalEncoder.forward_masked: 'mask_ratio'")
        tokens = self._embed(x)
        b, length, dim = tokens.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(b, length, device=x.device, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(b, length, device=x.device, dtype=torch.float32)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(b, -1, -1)
        h = torch.cat([cls, kept], dim=1)
        for block in self.blocks:
            h = block(h)
        if before_norm is not None:
            h = before_norm(h)
        return self.norm(h), mask, ids_restore


def _tolerate_mask_token(module: SignalEncoder, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: reconcile the unused reference ``mask_token`` (see ``SignalEncoder``)."""
    key = prefix + "mask_token"
    if module.mask_token is None:
        state_dict.pop(key, None)
    elif key not in state_dict:
        state_dict[key] = module.mask_token.detach().clone()


class MaskedSignalAutoencoder(nn.Module):
    """The 1-D masked autoencoder (``MAEforEEG`` / ``MAEforFMRI``): a ``SignalEncoder`` and a light ViT decoder.

    Args:
        config: model sizes and the default ``mask_ratio``.
    """

    encoder_class: type[SignalEncoder] = SignalEncoder  #: the encoder built (a subclass may read other inputs)

    def __init__(self, config: MAE1DConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = self.encoder_class(config, reference_mask_token=False)
        dec = config.decoder_embed_dim
        self.decoder_embed = nn.Linear(config.embed_dim, dec)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.decoder_pos_embed = _fixed_pos_embed(dec, config.n_tokens)
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(dec, config.decoder_num_heads, config.mlp_ratio, qkv_bias=True)
            for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dec)
        self.decoder_pred = nn.Linear(dec, config.patch_size * config.n_channels)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(_init_linear_and_norm)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, L, patch_size * C)``; token ``t`` holds ``x[:, :, p*t : p*t+p]`` time-major.

        Element ``[b, t, j * C + c]`` is ``x[b, c, p * t + j]`` (the reference's ``x.transpose(1, 2).reshape``).
        """
        self.encoder.check_input(x)
        b = x.shape[0]
        return x.transpose(1, 2).reshape(b, self.config.n_tokens, self.config.patch_size * self.config.n_channels)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Exact inverse of ``patchify``: ``(B, L, patch_size * C) -> (B, C, T)``."""
        cfg = self.config
        expected = (cfg.n_tokens, cfg.patch_size * cfg.n_channels)
        if patches.ndim != 3 or tuple(patches.shape[1:]) != expected:
            raise ValueError(
                f"MaskedSignalAutoencoder.unpatchify: expected patches of shape (B, n_tokens={expected[0]}, "
                f"patch_size*n_channels={expected[1]}), got {tuple(patches.shape)}"
            )
        return patches.reshape(patches.shape[0], cfg.n_times, cfg.n_channels).transpose(1, 2)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every token's patch from the encoded kept tokens.

        Args:
            latent: ``(B, 1 + len_keep, embed_dim)`` from ``SignalEncoder.forward_masked``.
            ids_restore: ``(B, L)`` from the same call.

        Returns:
            ``(B, L, patch_size * n_channels)`` predictions (CLS dropped).
        """
        h = self.decoder_embed(latent)
        b, n_visible, dim = h.shape
        n_masked = ids_restore.shape[1] + 1 - n_visible
        tokens = torch.cat([h[:, 1:, :], self.mask_token.to(h.dtype).expand(b, n_masked, -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # back to time order
        h = torch.cat([h[:, :1, :], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            h = block(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:, :]

    def masked_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE per token (mean over the patch), averaged over masked tokens only; computed in float32.

        Returns 0 (with a graph) when nothing is masked.
        """
        per_token = ((pred.float() - self.patchify(x).float()) ** 2).mean(dim=-1)
        mask = mask.float()
        # when nothing is masked the sum is 0 and so is the loss; clamping avoids a host sync for that check
        return (per_token * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask, encode, decode and score.

        Args:
            x: input ``(B, n_channels, n_times)``.
            mask_ratio: fraction of tokens to mask; ``None`` uses ``config.mask_ratio``.
            generator: random generator for the masks (on ``x.device``).

        Returns:
            ``(loss, pred (B, L, patch_size * n_channels), mask (B, L))`` with mask 1 = masked.
        """
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.encoder.forward_masked(x, ratio, generator=generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.masked_loss(x, pred, mask), pred, mask
