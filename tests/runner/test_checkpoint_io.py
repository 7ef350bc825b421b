"""Checkpoints are written atomically: an interrupted save never replaces a good file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brain2img.callbacks import checkpoint_io
from brain2img.callbacks.checkpoint_io import AtomicCheckpointIO, atomic_torch_save


def test_atomic_save_round_trip(tmp_path):
    path = tmp_path / "sub" / "model.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.arange(5.0)}, path)
    assert torch.equal(torch.load(path)["w"], torch.arange(5.0))
    assert [p.name for p in path.parent.iterdir()] == ["model.ckpt"]


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(1000)}, path)
    good_bytes = path.read_bytes()

    def interrupted_save(obj, target):
        Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")  # some bytes hit the disk, then an interruption
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_io.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == good_bytes
    assert torch.load(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"], "temporary file left behind"


def test_plain_torch_save_would_corrupt(tmp_path):
    """Control: writing in place, the same interruption destroys the good file (what the atomic writer prevents)."""
    path = tmp_path / "last.ckpt"
    torch.save({"step": 1}, path)
    with open(path, "wb") as handle, pytest.raises(KeyboardInterrupt):
        handle.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt
    with pytest.raises(Exception):  # noqa: B017 - any unpickling error shows the corruption
        torch.load(path)
