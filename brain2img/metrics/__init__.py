"""Reconstruction metrics as torchmetrics ``Metric`` classes, de-duplicated by sample id for DDP."""

from __future__ import annotations

from brain2img.metrics.bootstrap import bootstrap_ci
from brain2img.metrics.identification import TwoWayIdentification
from brain2img.metrics.image_similarity import SSIM, PixCorr
from brain2img.metrics.nway import NWayTopKAccuracy
from brain2img.metrics.retrieval import RetrievalTopK
from brain2img.metrics.suite import ReconstructionMetrics

__all__ = [
    "SSIM",
    "NWayTopKAccuracy",
    "PixCorr",
    "ReconstructionMetrics",
    "RetrievalTopK",
    "TwoWayIdentification",
    "bootstrap_ci",
]
