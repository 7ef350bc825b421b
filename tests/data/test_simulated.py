"""SimulatedDataModule: interface, cache and manifest, and that the simulated brain really encodes the images."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import numpy as np
import pytest
import torch
from scipy.signal import welch
from sklearn.linear_model import Ridge

from brain2img.data import schema
from brain2img.data.simulated import SimulatedDataModule
from brain2img.encoders.image_features import EfficientNetLite0Features

SMALL = {"n_stimuli": 40, "image_size": 32, "n_voxels": (300, 200), "seed": 0, "batch_size": 8}


def make(cache_dir, **kw) -> SimulatedDataModule:
    return SimulatedDataModule(cache_dir=cache_dir, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def fmri(cache_dir) -> SimulatedDataModule:
    dm = make(cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def reference_features(fmri) -> tuple[torch.Tensor, torch.Tensor]:
    """EfficientNet pooled features of every stimulus, computed here from the served images (id order)."""
    images, ids = fmri.stimulus_images(("train", "val", "test"))
    assert torch.equal(ids, torch.arange(SMALL["n_stimuli"]))
    return EfficientNetLite0Features().encode(images)["pooled"].numpy()


def test_shapes_known_before_setup(tmp_path):
    dm = make(str(tmp_path / "c"), n_voxels=(1500, 1200))
    assert (dm.modality, dm.brain_shape, dm.image_size, dm.sfreq) == ("fmri", (1500,), 32, None)
    assert make(str(tmp_path / "c"), n_voxels=(1500, 1200), subject=1).brain_shape == (1200,)
    eeg = make(str(tmp_path / "c"), modality="eeg", n_channels=16, sfreq=100.0, duration=0.55)
    assert (eeg.modality, eeg.brain_shape, eeg.sfreq) == ("eeg", (16, 55), 100.0)
    assert eeg.manifest_path.name == "manifest.json"
    assert not (tmp_path / "c").exists()  # nothing generated or loaded yet


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="modality"):
        make(str(tmp_path), modality="meg")
    with pytest.raises(ValueError, match="subject"):
        make(str(tmp_path), subject=2)
    with pytest.raises(ValueError, match="eval_repeats"):
        make(str(tmp_path), eval_repeats="median")
    with pytest.raises(ValueError, match="predict_split"):
        make(str(tmp_path), predict_split="holdout")


def test_batches_follow_schema(fmri):
    splits = json.loads(fmri.manifest_path.read_text())["splits"]
    split_sizes = {k: len(v["stimulus_ids"]) for k, v in splits.items()}
    loaders = {"train": fmri.train_dataloader(), "val": fmri.val_dataloader(), "test": fmri.test_dataloader(),
               "predict": fmri.predict_dataloader()}
    for name, loader in loaders.items():
        batch = next(iter(loader))
        assert set(batch) == set(schema.SAMPLE_KEYS)
        n = len(batch["brain"])
        assert batch["brain"].shape == (n, 300) and batch["brain"].dtype == torch.float32
        assert batch["image"].shape == (n, 3, 32, 32) and batch["image"].dtype == torch.float32
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        for key in ("stimulus_id", "subject", "label", "index"):
            assert batch[key].dtype == torch.int64 and batch[key].shape == (n,), key
        assert (batch["subject"] == 0).all() and ((batch["label"] >= 0) & (batch["label"] < 11)).all()
        indices = torch.cat([b["index"] for b in loader])
        assert torch.equal(indices.sort().values, torch.arange(len(loader.dataset))), name
    assert split_sizes == {"train": 28, "val": 4, "test": 8}
    assert len(loaders["train"].dataset) == 3 * len(fmri.stimulus_images("train")[1])  # single trials
    assert len(loaders["test"].dataset) == len(fmri.stimulus_images("test")[1])  # one per stimulus


def test_train_shuffle_is_seeded(fmri, cache_dir):
    first = [b["index"] for b in fmri.train_dataloader()]
    again = [b["index"] for b in make(cache_dir).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.arange(len(torch.cat(first))))


def test_splits_disjoint_and_average_is_mean_of_repeats(fmri):
    folder = fmri.data_folder
    brain, trial_stim = np.load(folder / "brain.npy"), np.load(folder / "trial_stimulus.npy")
    test_ids = set(fmri.stimulus_images("test")[1].tolist())
    train_ids = set(torch.cat([b["stimulus_id"] for b in fmri.train_dataloader()]).tolist())
    assert test_ids and not test_ids & train_ids
    batch = next(iter(fmri.test_dataloader()))
    for brain_avg, sid, img in zip(batch["brain"], batch["stimulus_id"], batch["image"], strict=True):
        expected = brain[trial_stim == int(sid)].mean(axis=0)
        np.testing.assert_allclose(brain_avg.numpy(), expected, rtol=1e-5, atol=1e-5)
        stim_imgs, stim_ids = fmri.stimulus_images("test")
        assert torch.equal(img, stim_imgs[stim_ids == sid][0])
    single = make(fmri.cache_dir, eval_repeats="single")
    assert len(single.test_dataloader().dataset) == 3 * len(test_ids)


def test_cache_reused_with_verified_checksums(fmri, cache_dir):
    manifest = json.loads(fmri.manifest_path.read_text())
    for name, digest in manifest["checksums"].items():
        assert hashlib.sha256((fmri.data_folder / name).read_bytes()).hexdigest() == digest
    trials = manifest["splits"]["test"]["trial_ids"]
    trial_stim = np.load(fmri.data_folder / "trial_stimulus.npy")
    assert set(trial_stim[trials].tolist()) == set(manifest["splits"]["test"]["stimulus_ids"])
    mtime = (fmri.data_folder / "brain.npy").stat().st_mtime_ns
    start = time.perf_counter()
    again = make(cache_dir)
    again.prepare_data()
    again.setup("fit")
    assert time.perf_counter() - start < 1.0
    assert (fmri.data_folder / "brain.npy").stat().st_mtime_ns == mtime


def test_corrupted_cache_file_is_a_clear_error(fmri, tmp_path):
    shutil.copytree(fmri.cache_dir, tmp_path, dirs_exist_ok=True)
    dm = make(str(tmp_path))
    with open(dm.data_folder / "brain.npy", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match=r"checksum mismatch.*brain\.npy"):
        dm.setup("fit")


def _ridge_score(dm, features, shuffle: bool = False) -> float:
    """Mean Pearson r over features between Ridge predictions and the truth on test stimuli."""
    train = dm.dataset("train", "single")
    x_train, y_train = train.brain.numpy(), features[train.stimulus_ids[train.stimulus].numpy()]
    if shuffle:
        y_train = y_train[np.random.default_rng(0).permutation(len(y_train))]
    test = dm.dataset("test", "average")
    pred = Ridge(alpha=float(x_train.shape[1])).fit(x_train, y_train).predict(test.brain.numpy())
    true = features[test.stimulus_ids[test.stimulus].numpy()]
    keep = true.std(axis=0) > 1e-6
    pred, true = pred[:, keep], true[:, keep]
    pc, tc = pred - pred.mean(0), true - true.mean(0)
    r = (pc * tc).sum(0) / np.sqrt((pc**2).sum(0) * (tc**2).sum(0) + 1e-12)
    return float(r.mean())


def test_fmri_encodes_image_features(fmri, reference_features):
    real = _ridge_score(fmri, reference_features)
    control = _ridge_score(fmri, reference_features, shuffle=True)
    assert real > control + 0.2, (real, control)


def test_fmri_signal_grows_with_snr(cache_dir, reference_features):
    scores = []
    for snr in (0.02, 0.3, 5.0):
        dm = make(cache_dir, snr=snr)
        dm.setup()
        scores.append(_ridge_score(dm, reference_features))
    assert scores[0] < scores[1] < scores[2], scores


def test_subjects_have_different_voxel_counts(fmri, cache_dir):
    other = make(cache_dir, subject=1)
    other.setup()
    assert fmri.brain_shape == (300,) and other.brain_shape == (200,)
    assert next(iter(other.test_dataloader()))["brain"].shape[1:] == (200,)
    assert torch.equal(other.stimulus_images("test")[1], fmri.stimulus_images("test")[1])  # same stimuli and split


def test_eeg_background_spectrum_and_evoked_latency(cache_dir):
    dm = make(cache_dir, modality="eeg", n_repeats=4)
    dm.setup()
    brain, trial_stim = np.load(dm.data_folder / "brain.npy"), np.load(dm.data_folder / "trial_stimulus.npy")
    assert brain.shape == (160, 32, 64) and brain.dtype == np.float32
    per_stim = np.stack([brain[trial_stim == s].mean(0) for s in range(40)])
    residual = brain - per_stim[trial_stim]  # background noise (x 3/4 in variance)
    freqs, psd = welch(residual, fs=128.0, nperseg=64, axis=-1)
    psd = psd.mean(axis=(0, 1))

    def band(lo, hi):
        return psd[(freqs >= lo) & (freqs <= hi)].mean()

    assert band(8, 12) > 1.5 * band(4, 7) and band(8, 12) > 1.5 * band(14, 20)
    sel = (freqs >= 2) & (freqs <= 50) & ((freqs < 7) | (freqs > 13))
    slope = np.polyfit(np.log(freqs[sel]), np.log(psd[sel]), 1)[0]
    assert slope < -0.4, slope
    gfp = brain.mean(axis=0).std(axis=0)
    assert 0.1 <= np.argmax(gfp) / 128.0 <= 0.4
    batch = next(iter(dm.train_dataloader()))
    assert batch["brain"].shape == (8, 32, 64) and batch["brain"].dtype == torch.float32
