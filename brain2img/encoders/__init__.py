"""Plain ``nn.Module`` encoders (no Lightning, no I/O beyond loading local weights)."""

from brain2img.encoders.fmri_mae import FMRIEncoder, MaskedFMRIAutoencoder, fmri_mae_config
from brain2img.encoders.mae1d import (
    EEG_MAE_PRESETS,
    MAE1DConfig,
    MaskedSignalAutoencoder,
    PatchEmbed1D,
    SignalEncoder,
    eeg_mae_config,
)
from brain2img.encoders.pos_embed import get_1d_sincos_pos_embed
from brain2img.encoders.transformer import TransformerBlock

__all__ = ["EEG_MAE_PRESETS", "FMRIEncoder", "MAE1DConfig", "MaskedFMRIAutoencoder", "MaskedSignalAutoencoder",
           "PatchEmbed1D", "SignalEncoder", "TransformerBlock", "eeg_mae_config", "fmri_mae_config",
           "get_1d_sincos_pos_embed"]
