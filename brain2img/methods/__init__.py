"""Thin LightningModules, one per published method, composed from the library parts."""

from brain2img.methods.base import ReconstructionMethod
from brain2img.methods.dcmae import DCMAE
from brain2img.methods.dcmae_cross import DCMAECrossModal
from brain2img.methods.dreamdiffusion import DreamDiffusion
from brain2img.methods.eeg_pretrain import MaskedSignalPretraining
from brain2img.methods.fmri_pretrain import FMRIPretraining
from brain2img.methods.mindeye import MindEye
from brain2img.methods.osaka import OsakaMethod

__all__ = ["DCMAE", "DCMAECrossModal", "DreamDiffusion", "FMRIPretraining", "MaskedSignalPretraining", "MindEye",
           "OsakaMethod", "ReconstructionMethod"]
