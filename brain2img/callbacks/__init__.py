"""Lightning callbacks and plugins: atomic checkpoints, image grids, metrics files, prediction writing."""

from brain2img.callbacks.checkpoint_io import AtomicCheckpointIO
from brain2img.callbacks.image_grid import ReconstructionGrid
from brain2img.callbacks.metrics_file import MetricsFile
from brain2img.callbacks.prediction_writer import PredictionWriter

__all__ = ["AtomicCheckpointIO", "MetricsFile", "PredictionWriter", "ReconstructionGrid"]
