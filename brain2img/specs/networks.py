"""Specs of the preset-sized networks: MindEye's ``network``, ``prior`` and ``low_level``, the EEG and fMRI ``encoder``.

Each is made by :func:`~brain2img.presets.preset_spec` from its config dataclass: ``preset`` plus every config field
as an optional override, except the fields the method sets from the data and the image encoder.
"""

from __future__ import annotations

from brain2img.diffusion.prior import PRIOR_PRESETS, PriorConfig
from brain2img.encoders.fmri_mae import FMRI_MAE_PRESETS, FMRIMAEConfig
from brain2img.encoders.mae1d import EEG_MAE_PRESETS, MAE1DConfig
from brain2img.encoders.mindeye import LOW_LEVEL_PRESETS, MINDEYE_PRESETS, LowLevelConfig, MindEyeConfig
from brain2img.presets import preset_spec

OVERRIDES = "Every field but preset is an override of the preset's value (null: keep it)."

NetworkSpec = preset_spec(
    "NetworkSpec", MindEyeConfig, MINDEYE_PRESETS, module=__name__, owner="model.network",
    summary=f"MindEye's BrainNetwork (voxels -> backbone tokens + projector tokens). {OVERRIDES}",
    preset_doc="paper (MindEye1 subject 1: h 4096, 4 blocks) or tiny (h 64, 1 block).",
    fixed={"n_voxels": "brain_shape, from the data", "clip_tokens": "the image encoder's tokens",
           "clip_dim": "the image encoder's token width"})

PriorSpec = preset_spec(
    "PriorSpec", PriorConfig, PRIOR_PRESETS, module=__name__, owner="model.prior", can_be_off=True,
    summary=f"MindEye's diffusion prior (backbone tokens -> image tokens); preset null: no prior. {OVERRIDES}",
    preset_doc="paper (MindEye1: depth 6, 12 heads of 64), tiny, or null: no prior (reconstruction conditions on the "
               "projector's tokens; the default).",
    fixed={"dim": "the image encoder's token width", "num_tokens": "the image encoder's tokens"})

LowLevelSpec = preset_spec(
    "LowLevelSpec", LowLevelConfig, LOW_LEVEL_PRESETS, module=__name__, owner="model.low_level", can_be_off=True,
    summary=f"MindEye's low-level branch (voxels -> VAE latent, the img2img start); preset null: none. {OVERRIDES}",
    preset_doc="paper (MindEye1's Voxel2StableDiffusionModel, 4 x 64 x 64 latent), tiny, or null: no low-level "
               "branch (reconstruction from noise; the default).",
    fixed={"n_voxels": "brain_shape, from the data", "latent_shape": "the backbone's VAE latent shape"})

EEGEncoderSpec = preset_spec(
    "EEGEncoderSpec", MAE1DConfig, EEG_MAE_PRESETS, module=__name__, owner="model.encoder",
    summary=f"The EEG encoder (and, in pre-training, its masked-autoencoder decoder). {OVERRIDES}",
    preset_doc="paper (DreamDiffusion: width 1024, 24 blocks) or tiny (width 64, 2 blocks); fine-tuning must use the "
               "sizes of the pre-trained encoder.",
    fixed={"n_channels": "brain_shape, from the data", "n_times": "brain_shape, from the data",
           "mask_ratio": "the method's mask_ratio (MaskedSignalPretraining; fine-tuning masks nothing)"})


def eeg_encoder_config(brain_shape: tuple[int, ...], encoder: object, **extra: object) -> MAE1DConfig:
    """The EEG encoder config for windows of ``brain_shape``: the spec's preset with its overrides, sized to the data;
    ``extra`` are the other fields the method sets (``mask_ratio``).

    Raises:
        ValueError: ``brain_shape`` is not ``(n_channels, n_times)`` (e.g. an fMRI datamodule).
    """
    if len(brain_shape) != 2:
        raise ValueError(f"EEG models need brain_shape (n_channels, n_times), got {tuple(brain_shape)}: is the "
                         "datamodule an EEG one (data.modality)?")
    return EEGEncoderSpec.coerce(encoder).config(**extra, n_channels=brain_shape[0], n_times=brain_shape[1])


FMRIEncoderSpec = preset_spec(
    "FMRIEncoderSpec", FMRIMAEConfig, FMRI_MAE_PRESETS, module=__name__, owner="model.encoder",
    summary=f"The fMRI encoder on 16-voxel patches (and, in pre-training, its masked-autoencoder decoder). {OVERRIDES}",
    preset_doc="paper (MinD-Vis / DC-MAE: width 1024, 24 blocks, decoder 512 x 8) or tiny (width 64, 2 blocks); "
               "later stages must use the sizes of the pre-trained encoder.",
    fixed={"n_voxels": "brain_shape, from the data", "n_channels": "1 (voxels are one channel)",
           "n_times": "the padded voxel count (from n_voxels and patch_size)",
           "mask_ratio": "the method's mask_ratio (later stages that do not mask ignore it)"})


def fmri_encoder_config(brain_shape: tuple[int, ...], encoder: object, **extra: object) -> FMRIMAEConfig:
    """The fMRI encoder config for voxel vectors of ``brain_shape``: the spec's preset with its overrides.

    Raises:
        ValueError: ``brain_shape`` is not ``(n_voxels,)`` (e.g. an EEG datamodule).
    """
    if len(brain_shape) != 1:
        raise ValueError(f"fMRI models need brain_shape (n_voxels,), got {tuple(brain_shape)}: is the datamodule an "
                         "fMRI one (data.modality)?")
    return FMRIEncoderSpec.coerce(encoder).config(**extra, n_voxels=int(brain_shape[0]))
