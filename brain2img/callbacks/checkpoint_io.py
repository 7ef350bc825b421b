"""Checkpoint I/O that never leaves a half-written file in place of a good one."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from brain2img.io import atomic_path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Save ``obj`` with :func:`torch.save` atomically.

    The object is written to a temporary file in the same folder, fsynced, then moved over ``path`` (see
    :func:`brain2img.io.atomic_path`). If anything fails or the process is killed before the rename, the previous file
    at ``path`` is untouched and the temporary file is removed (or, after a hard kill, left as a ``.tmp`` file beside
    it, never under the checkpoint's name).

    Args:
        obj: anything :func:`torch.save` accepts.
        path: destination file.
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose ``save_checkpoint`` writes atomically to local paths (see
    :func:`atomic_torch_save`); remote (fsspec URL) paths fall back to Lightning's own transaction-based save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint got storage_options, which it does not support")
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)
