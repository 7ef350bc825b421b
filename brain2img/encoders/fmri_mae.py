"""The fMRI masked autoencoder of MinD-Vis (SC-MBM) and DC-MAE: the 1-D MAE of :mod:`brain2img.encoders.mae1d` on
voxel patches.

A voxel vector ``(B, V)`` is wrap-padded as the reference's ``pad_to_patch_size`` (an already divisible count gains
a full extra patch: 4656 -> 4672, 5355 -> 5360) and read as one channel, ``(B, 1, V_padded)``; the patch embedding
is then ``Conv1d(1 -> 1024, kernel 16, stride 16)``, so tokens are 16-voxel patches in file order (GOD sbj_3: 335
tokens). The paper sizes (encoder 1024 / depth 24 / 16 heads, mlp ratio 1.0, decoder 512 / 8 / 16, mask 0.75) give
an encoder of 151,606,272 parameters at sbj_3, the reference's count, ``mask_token`` included.

The encoder's positions are fixed sine-cosine tables, so an encoder pre-trained on another voxel count (a corpus
padded to its longest subject) loads into one of this subject's length by keeping this encoder's own table
(:data:`RESIZABLE`; the reference's ``interpolate_pos_embed`` resamples the stored table instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from brain2img.encoders.mae1d import MAE1DConfig, MaskedSignalAutoencoder, SignalEncoder
from brain2img.encoders.voxel_padding import pad_to_length, padded_length
from brain2img.presets import config_from_preset


@dataclass
class FMRIMAEConfig(MAE1DConfig):
    """Sizes of the fMRI encoder and its masked autoencoder; ``n_channels`` (1) and ``n_times`` (the padded voxel
    count) follow from ``n_voxels`` and ``patch_size``.

    Attributes:
        n_voxels: voxels of the input (before padding).
    """

    n_voxels: int = 5355

    def __post_init__(self) -> None:
        if isinstance(self.n_voxels, bool) or not isinstance(self.n_voxels, int) or self.n_voxels < 1:
            raise ValueError(f"FMRIMAEConfig: 'n_voxels' must be a positive integer, got {self.n_voxels!r}")
        self.n_channels = 1
        if isinstance(self.patch_size, int) and self.patch_size > 0:
            self.n_times = padded_length(self.n_voxels, self.patch_size)
        super().__post_init__()


FMRI_MAE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 1.0,
              "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16, "mask_ratio": 0.75},
    "tiny": {"patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0,
             "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 4, "mask_ratio": 0.75},
}


def fmri_mae_config(n_voxels: int, preset: str = "tiny", **overrides: Any) -> FMRIMAEConfig:
    """Build an fMRI config for ``n_voxels`` from a named preset (``paper`` or ``tiny``) with field overrides."""
    return config_from_preset(FMRIMAEConfig, FMRI_MAE_PRESETS, "fmri_mae_config", preset,
                              {**overrides, "n_voxels": int(n_voxels)})


def voxels_as_signal(x: torch.Tensor, config: FMRIMAEConfig, owner: str = "fMRI encoder") -> torch.Tensor:
    """``(B, n_voxels) -> (B, 1, n_times)``: wrap-pad to the padded length and add the channel axis.

    Raises:
        ValueError: ``x`` is not ``(B, n_voxels)``, naming both counts.
    """
    if x.ndim != 2 or x.shape[1] != config.n_voxels:
        raise ValueError(f"{owner} was built for {config.n_voxels} voxels (padded to {config.n_times}), got input of "
                         f"shape {tuple(x.shape)}: use the subject and ROI it was trained on (data.subject, data.roi)")
    return pad_to_length(x, config.n_times).unsqueeze(1)


RESIZABLE = ("pos_embed",)  #: encoder keys whose stored value may have another length (kept from the new encoder)


class FMRIEncoder(SignalEncoder):
    """The MinD-Vis ``fmri_encoder`` on voxel vectors ``(B, n_voxels)``: pads, then encodes as
    :class:`~brain2img.encoders.mae1d.SignalEncoder` (``forward`` -> ``(B, n_tokens, embed_dim)``)."""

    config: FMRIMAEConfig

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return super()._embed(voxels_as_signal(x, self.config, type(self).__name__))


class MaskedFMRIAutoencoder(MaskedSignalAutoencoder):
    """The MinD-Vis ``MAEforFMRI`` on voxel vectors ``(B, n_voxels)``; predictions and targets are padded patches.

    Args:
        config: model sizes.
    """

    encoder_class = FMRIEncoder
    config: FMRIMAEConfig

    def signal(self, x: torch.Tensor) -> torch.Tensor:
        """The padded input as the autoencoder sees it, ``(B, n_times)`` (the target of reconstruction)."""
        return voxels_as_signal(x, self.config, type(self).__name__).squeeze(1)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_voxels) -> (B, n_tokens, patch_size)``: patch ``t`` is padded voxels ``16 t .. 16 t + 15``."""
        return super().patchify(voxels_as_signal(x, self.config, type(self).__name__))

    def reconstruction(self, pred: torch.Tensor) -> torch.Tensor:
        """Predicted patches ``(B, n_tokens, patch_size)`` as padded voxel vectors ``(B, n_times)``."""
        return self.unpatchify(pred).squeeze(1)
