"""Store the run's resolved config inside every checkpoint, so a checkpoint alone rebuilds model and data."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L

CONFIG_KEY = "brain2img_config"


class ConfigInCheckpoint(L.Callback):
    """Add ``config`` (plain YAML-able values) to each checkpoint under :data:`CONFIG_KEY`.

    Args:
        config: the resolved ``model``/``data``/``seed_everything`` config of the run.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = copy.deepcopy(config)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Write the config into the checkpoint dict."""
        checkpoint[CONFIG_KEY] = copy.deepcopy(self.config)
