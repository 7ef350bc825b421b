"""Plain ``nn.Module`` encoders (no Lightning, no I/O beyond loading local weights)."""

from brain2img.encoders.eeg_mae import (
    EEG_MAE_PRESETS,
    EEGEncoder,
    EEGMAEConfig,
    MaskedEEGAutoencoder,
    PatchEmbed1D,
    eeg_mae_config,
)
from brain2img.encoders.pos_embed import get_1d_sincos_pos_embed
from brain2img.encoders.transformer import TransformerBlock

__all__ = ["EEG_MAE_PRESETS", "EEGEncoder", "EEGMAEConfig", "MaskedEEGAutoencoder", "PatchEmbed1D", "TransformerBlock",
           "eeg_mae_config", "get_1d_sincos_pos_embed"]
