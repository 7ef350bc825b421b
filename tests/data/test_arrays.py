"""ArrayDataModule: user .npy files, the same interface and split, and clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brain2img.data import schema
from brain2img.data.arrays import ArrayDataModule

N_STIM, REPEATS = 30, 2


def write(tmp_path, brain=None, images=None, **extra):
    """Write a small valid dataset (EEG-shaped, each stimulus shown twice), with optional replacements."""
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(N_STIM), REPEATS)
    stim_images = rng.integers(0, 256, size=(N_STIM, 16, 16, 3), dtype=np.uint8)
    arrays = {
        "brain": rng.standard_normal((len(ids), 4, 10)).astype(np.float32) if brain is None else brain,
        "images": stim_images[ids] if images is None else images,
        "ids": ids, "labels": ids % 3, "subjects": np.zeros(len(ids), dtype=np.int64), **extra,
    }
    paths = {}
    for name, arr in arrays.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], arr)
    return paths


def module(tmp_path, paths, **kw) -> ArrayDataModule:
    return ArrayDataModule(paths["brain"], paths["images"], paths["ids"], paths["labels"], paths["subjects"],
                           cache_dir=str(tmp_path / "cache"), batch_size=7, **kw)


def test_interface_and_split(tmp_path):
    paths = write(tmp_path)
    dm = module(tmp_path, paths, sfreq=50.0)
    assert (dm.modality, dm.brain_shape, dm.image_size, dm.sfreq) == ("eeg", (4, 10), 16, 50.0)
    assert not dm.manifest_path.exists()
    dm.setup("fit")
    assert dm.manifest_path.is_file()
    train_ids = torch.cat([b["stimulus_id"] for b in dm.train_dataloader()])
    test = next(iter(dm.test_dataloader()))
    assert len(train_ids) == 2 * 21 and not set(train_ids.tolist()) & set(test["stimulus_id"].tolist())
    assert set(test) == set(schema.SAMPLE_KEYS) and test["brain"].shape == (6, 4, 10)
    brain = np.load(paths["brain"])
    ids = np.load(paths["ids"])
    for b, sid, label in zip(test["brain"], test["stimulus_id"], test["label"], strict=True):
        np.testing.assert_allclose(b.numpy(), brain[ids == int(sid)].mean(0), rtol=1e-5, atol=1e-6)
        assert int(label) == int(sid) % 3
    images, image_ids = dm.stimulus_images("test")
    expected = np.load(paths["images"])[[int(np.flatnonzero(ids == i)[0]) for i in image_ids]]
    np.testing.assert_allclose(images.numpy(), expected.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


def test_float_nchw_images_and_fmri(tmp_path):
    ids = np.tile(np.arange(N_STIM), REPEATS)
    images = np.random.default_rng(1).uniform(size=(N_STIM, 3, 20, 20)).astype(np.float32)[ids]
    brain = np.random.default_rng(2).standard_normal((len(ids), 12))
    dm = module(tmp_path, write(tmp_path, brain=brain, images=images))
    assert (dm.modality, dm.brain_shape, dm.image_size, dm.sfreq) == ("fmri", (12,), 20, None)
    batch = next(iter(dm.val_dataloader()))
    assert batch["brain"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 20, 20)
    sid = int(batch["stimulus_id"][0])
    assert torch.allclose(batch["image"][0], torch.from_numpy(images[sid]), atol=1 / 255)


def test_count_mismatch_names_both_files(tmp_path):
    paths = write(tmp_path, images=np.zeros((59, 16, 16, 3), dtype=np.uint8))
    dm = module(tmp_path, paths)
    with pytest.raises(ValueError, match=r"brain\.npy' has 60 trials but images '.*images\.npy' has 59"):
        dm.setup()


def test_nan_in_brain_names_file_first_trial_and_count(tmp_path):
    brain = np.random.default_rng(0).standard_normal((60, 4, 10)).astype(np.float32)
    brain[7, 1, 2] = np.nan
    brain[9, 0, 0] = np.inf
    brain[9, 3, 3] = np.nan
    dm = module(tmp_path, write(tmp_path, brain=brain))
    message = r"brain\.npy' contains NaN or Inf in 2 of 60 trials \(first bad trial index 7"
    with pytest.raises(ValueError, match=message):
        dm.setup()


@pytest.mark.parametrize(
    "images",
    [np.zeros((60, 16, 16, 3), dtype=np.float32), np.zeros((60, 16, 16), dtype=np.uint8),
     np.zeros((60, 3, 16, 16), dtype=np.uint8), np.zeros((60, 16, 12, 3), dtype=np.uint8)],
)
def test_bad_image_layout_names_file_and_layout(tmp_path, images):
    paths = write(tmp_path, images=images)
    with pytest.raises(ValueError, match=r"images\.npy' have shape .* expected \(N, H, W, 3\) uint8"):
        module(tmp_path, paths)


def test_float_images_out_of_range(tmp_path):
    images = np.full((60, 3, 16, 16), 2.0, dtype=np.float32)
    dm = module(tmp_path, write(tmp_path, images=images))
    with pytest.raises(ValueError, match=r"images\.npy' are float with values in \[2, 2\]"):
        dm.setup()


def test_inconsistent_per_stimulus_values(tmp_path):
    labels = np.tile(np.arange(N_STIM), REPEATS) % 3
    labels[45] += 1
    dm = module(tmp_path, write(tmp_path, labels=labels))
    with pytest.raises(ValueError, match=r"labels '.*labels\.npy' differ between trials of the same stimulus"):
        dm.setup()
    rng = np.random.default_rng(5)
    dm = module(tmp_path, write(tmp_path, images=rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"images .* differ between trials of the same stimulus"):
        dm.setup()


def test_per_trial_vector_length(tmp_path):
    dm = module(tmp_path, write(tmp_path, subjects=np.zeros(10, dtype=np.int64)))
    with pytest.raises(ValueError, match=r"subjects '.*subjects\.npy' has shape \(10,\): expected \(60,\)"):
        dm.setup()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"brain data file not found: '.*nope\.npy'"):
        ArrayDataModule(str(tmp_path / "nope.npy"), str(tmp_path / "images.npy"))


def test_changed_input_gets_a_new_prepared_folder(tmp_path):
    paths = write(tmp_path)
    first = module(tmp_path, paths)
    first.setup()
    old_folder, old_manifest = first.data_folder, first.manifest_path.read_text()
    np.save(paths["brain"], np.load(paths["brain"]) + 1)
    second = module(tmp_path, paths)
    second.setup()
    assert second.data_folder != old_folder  # the sha256 of the inputs names the folder
    assert old_manifest == (old_folder / "manifest.json").read_text()  # nothing prepared earlier is overwritten
    brain_then = first.dataset("train", "single").brain
    assert torch.allclose(second.dataset("train", "single").brain, brain_then + 1)
    test_ids = [json.loads(dm.manifest_path.read_text())["splits"]["test"]["stimulus_ids"] for dm in (first, second)]
    assert test_ids[0] == test_ids[1]  # same stimuli, same seed: the same split
