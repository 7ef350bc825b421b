"""Image grid, metrics file and prediction writer callbacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from brain2img.callbacks.image_grid import make_grid
from brain2img.callbacks.prediction_writer import PredictionWriter


def test_make_grid_places_tiles():
    gt = torch.zeros(3, 3, 4, 5)
    rec = torch.ones(3, 3, 4, 5)
    grid = make_grid([gt, rec], pad=1)
    assert grid.shape == (2 * (4 + 1) + 1, 3 * (5 + 1) + 1, 3)
    assert grid.dtype == np.uint8
    assert (grid[1:5, 1:6] == 0).all()  # first ground-truth tile is black
    assert (grid[6:10, 1:6] == 255).all()  # first reconstruction tile is white
    assert (grid[0] == 255).all()  # white border


class _FakeTrainer:
    is_global_zero = True


def test_prediction_writer_files_and_manifest(tmp_path):
    writer = PredictionWriter(tmp_path / "out")
    writer.setup(_FakeTrainer(), None, "predict")
    rng = torch.Generator().manual_seed(0)
    pred = {
        "reconstruction": torch.rand(3, 3, 8, 8, generator=rng),
        "embedding": torch.randn(3, 6, generator=rng),
        "stimulus_id": torch.tensor([7, 2, 7]),  # 7 twice, as DistributedSampler padding would give
    }
    writer.write_on_batch_end(_FakeTrainer(), None, pred, None, None, 0)
    writer.on_predict_end(_FakeTrainer(), None)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_samples"] == 2
    assert [s["stimulus_id"] for s in manifest["samples"]] == [2, 7]
    entry = manifest["samples"][0]
    png = np.asarray(Image.open(tmp_path / "out" / entry["reconstruction"]))
    expected = (pred["reconstruction"][1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(png, expected)
    np.testing.assert_allclose(np.load(tmp_path / "out" / entry["embedding"]), pred["embedding"][1].numpy())


def test_prediction_writer_refuses_to_overwrite(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds predictions"):
        PredictionWriter(tmp_path).setup(_FakeTrainer(), None, "predict")
    PredictionWriter(tmp_path, overwrite=True).setup(_FakeTrainer(), None, "predict")
