"""Thin LightningModules, one per published method, composed from the library parts."""

from brain2img.methods.base import ReconstructionMethod
from brain2img.methods.osaka import OsakaMethod

__all__ = ["OsakaMethod", "ReconstructionMethod"]
