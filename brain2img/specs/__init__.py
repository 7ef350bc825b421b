"""Typed settings of the methods' parts (``model.init_args.<part>`` in YAML), one frozen dataclass each.

jsonargparse lists their fields in ``brain2img fit --model.help <Method>`` and refuses a misspelt key at parse time.
Python callers may pass a spec, a dict of its fields or ``None``; :meth:`~brain2img.presets.Spec.coerce` turns any of
them into the spec and ``to_dict()`` into the plain data stored as hyperparameters (checkpoints hold no classes).

- Preset-sized (a ``preset`` plus optional overrides, null = the preset's value): :class:`BackboneSpec`,
  :class:`NetworkSpec`, :class:`PriorSpec`, :class:`LowLevelSpec`, :class:`EEGEncoderSpec`,
  :class:`FMRIEncoderSpec`.
- Written out: :class:`ImageEncoderSpec`, :class:`TokenEncoderSpec`, :class:`MetricsSpec` (+ :class:`ClassifierSpec`),
  :class:`CaptionsSpec`.

Parts that can be off: ``prior`` and ``low_level`` with ``preset: null`` (MindEye's default), ``captions`` while no
caption source is given (the default), ``metrics.classifier`` with ``kind: null`` (the default feature net).
"""

from brain2img.specs.backbone import BackboneSpec
from brain2img.specs.metrics import ClassifierSpec, MetricsSpec
from brain2img.specs.networks import (
    EEGEncoderSpec,
    FMRIEncoderSpec,
    LowLevelSpec,
    NetworkSpec,
    PriorSpec,
    eeg_encoder_config,
    fmri_encoder_config,
)
from brain2img.specs.parts import CaptionsSpec, ImageEncoderSpec, TokenEncoderSpec

# the methods' defaults (frozen, so one shared instance is safe as an argument default)
TINY_BACKBONE = BackboneSpec()
TINY_NETWORK = NetworkSpec()
NO_PRIOR = PriorSpec(preset=None)
NO_LOW_LEVEL = LowLevelSpec(preset=None)
TINY_EEG_ENCODER = EEGEncoderSpec()
TINY_FMRI_ENCODER = FMRIEncoderSpec()
DEFAULT_IMAGE_ENCODER = ImageEncoderSpec()
DEFAULT_TOKEN_ENCODER = TokenEncoderSpec()
DEFAULT_METRICS = MetricsSpec()
NO_CAPTIONS = CaptionsSpec()

__all__ = [
    "DEFAULT_IMAGE_ENCODER", "DEFAULT_METRICS", "DEFAULT_TOKEN_ENCODER", "NO_CAPTIONS", "NO_LOW_LEVEL", "NO_PRIOR",
    "TINY_BACKBONE", "TINY_EEG_ENCODER", "TINY_FMRI_ENCODER", "TINY_NETWORK", "BackboneSpec", "CaptionsSpec",
    "ClassifierSpec", "EEGEncoderSpec", "FMRIEncoderSpec", "ImageEncoderSpec", "LowLevelSpec", "MetricsSpec",
    "NetworkSpec", "PriorSpec", "TokenEncoderSpec", "eeg_encoder_config", "fmri_encoder_config",
]
