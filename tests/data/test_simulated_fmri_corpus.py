"""Simulated pre-training corpora: SimulatedFMRICorpus, and SimulatedEEGCorpus's spontaneous part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brain2img import registry
from brain2img.data import schema
from brain2img.data.simulated import SimulatedDataModule, SimulatedEEGCorpus, SimulatedFMRICorpus, sources

SMALL = {"n_subjects": 10, "windows_per_subject": 20, "voxel_range": (50, 90), "n_sources": 8, "shared": 0.8,
         "val_fraction": 0.2, "seed": 0, "batch_size": 16}
BENCH = {"n_stimuli": 22, "image_size": 16, "n_repeats": 2}


def make(**kw) -> SimulatedFMRICorpus:
    return SimulatedFMRICorpus(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def corpus() -> SimulatedFMRICorpus:
    dm = make()
    dm.setup()
    return dm


def _rows(dm: SimulatedFMRICorpus, subject: int) -> np.ndarray:
    """All windows of one subject (train or val), in order."""
    for split in ("train", "val"):
        w = dm.dataset(split)
        rows = (w.subject == subject).numpy()
        if rows.any():
            return w.brain.numpy()[rows]
    raise AssertionError(f"subject {subject} not in the corpus")


def _zscore_and_wrap(block: np.ndarray, length: int) -> np.ndarray:
    """Reference: one scalar mean/std per subject, then the subject's own voxels repeated up to ``length``."""
    z = (block - block.mean()) / block.std()
    return z[:, np.arange(length) % block.shape[1]]


def test_shapes_known_before_setup_and_registered():
    dm = make()
    counts = dm.subject_voxels
    assert len(counts) == 10 and counts.min() >= 50 and counts.max() <= 90 and len(set(counts.tolist())) > 3
    assert (dm.modality, dm.brain_shape, dm.sfreq) == ("fmri", (int(counts.max()),), None)
    assert dm._windows is None  # nothing simulated yet
    assert registry.get("simulated_fmri_corpus").resolve() is SimulatedFMRICorpus
    defaults = SimulatedFMRICorpus()
    assert (defaults.n_subjects, defaults.windows_per_subject) == (100, 120)
    assert 1500 <= defaults.brain_shape[0] <= 1600  # covers the benchmark's 1500 voxels


def test_sizes_and_subject_wise_validation(corpus):
    train, val = corpus.dataset("train"), corpus.dataset("val")
    assert len(train) + len(val) == 10 * 20 and len(val) == 2 * 20
    val_ids, train_ids = set(val.subject.tolist()), set(train.subject.tolist())
    assert val_ids == set(corpus.val_subjects().tolist()) and len(val_ids) == 2 and not val_ids & train_ids
    assert val_ids | train_ids == set(range(1000, 1010))  # corpus ids, disjoint from benchmark subjects 0, 1, ...
    for w in (train, val):
        assert w.brain.dtype == torch.float32 and w.brain.shape[1:] == corpus.brain_shape
        assert w.subject.dtype == torch.int64
    batch = next(iter(corpus.train_dataloader()))
    assert set(batch) == {schema.BRAIN, schema.SUBJECT, schema.INDEX}
    assert batch["brain"].shape == (16, *corpus.brain_shape)
    assert len(next(iter(corpus.val_dataloader()))["brain"]) == 16


def test_values_are_zscored_per_subject_and_wrap_padded(corpus):
    length = corpus.brain_shape[0]
    for sid, n_vox in zip(corpus.subject_ids.tolist(), corpus.subject_voxels.tolist(), strict=True):
        rows = _rows(corpus, sid)
        raw = sources.fmri_spontaneous(20, n_vox, 1.0, 0, sid, 8, 0.8).astype(np.float64)
        np.testing.assert_allclose(rows, _zscore_and_wrap(raw, length), atol=1e-5)
        own = rows[:, :n_vox].astype(np.float64)
        assert own.mean() == pytest.approx(0.0, abs=1e-6) and own.std() == pytest.approx(1.0, abs=1e-5)
        if n_vox < length:
            np.testing.assert_array_equal(rows[:, n_vox:], rows[:, : length - n_vox])


def test_seeded_and_deterministic(corpus):
    again = make()
    for split in ("train", "val"):
        assert torch.equal(again.dataset(split).brain, corpus.dataset(split).brain)
        assert torch.equal(again.dataset(split).subject, corpus.dataset(split).subject)
    first = [b["index"] for b in corpus.train_dataloader()]
    assert all(torch.equal(a, b["index"]) for a, b in zip(first, again.train_dataloader(), strict=True))
    other = make(seed=1)
    assert not np.array_equal(other.subject_voxels, corpus.subject_voxels) or not torch.equal(
        other.dataset("train").brain[:, :50], corpus.dataset("train").brain[:, :50])
    seeds = {tuple(make(seed=s).val_subjects().tolist()) for s in range(6)}
    assert len(seeds) > 1  # the held-out subjects depend on the seed


def test_corpus_subjects_share_the_template(corpus):
    # with shared=1 every subject's samples mix the same template columns: far-apart voxel pairs correlate alike
    dm = make(shared=1.0, windows_per_subject=400, n_subjects=2, val_fraction=0.5, voxel_range=(300, 300))
    dm.setup()
    a, b = _rows(dm, 1000), _rows(dm, 1001)
    ca, cb = np.corrcoef(a, rowvar=False), np.corrcoef(b, rowvar=False)
    i, j = np.triu_indices(300, 2 * sources.AREA_COLUMNS)
    assert np.corrcoef(ca[i, j], cb[i, j])[0, 1] > 0.6


def test_include_benchmark_adds_only_training_trials(cache_dir):
    dm = make(include_benchmark=True, n_voxels=(120, 40), cache_dir=cache_dir, **BENCH)
    dm.prepare_data()
    dm.setup()
    assert dm.brain_shape == (120,)  # the benchmark's 120 voxels are longer than any corpus subject's
    train = dm.dataset("train")
    assert not {0, 1} & set(dm.dataset("val").subject.tolist())
    for subject in (0, 1):
        bench = SimulatedDataModule(modality="fmri", subject=subject, n_voxels=(120, 40), n_sources=8, shared=0.8,
                                    seed=0, cache_dir=cache_dir, **BENCH)
        trials = bench.dataset("train", "single").brain.numpy().astype(np.float64)
        rows = train.brain.numpy()[(train.subject == subject).numpy()]
        np.testing.assert_allclose(rows, _zscore_and_wrap(trials, 120), atol=1e-5)
        n_train = len(bench.stimulus_images("train")[1])
        assert len(rows) == 2 * n_train < 2 * 22  # training stimuli only, every repeat
    assert len(train) + len(dm.dataset("val")) == 200 + sum(int((train.subject == s).sum()) for s in (0, 1))


@pytest.mark.parametrize(("setting", "value"), [
    ("n_subjects", 1), ("windows_per_subject", 0), ("n_sources", 0), ("voxel_range", (90, 50)), ("shared", 1.5),
    ("snr", 0.0), ("autocorrelation", 1.0), ("val_fraction", 0.0), ("n_subjects", 2.5),
])
def test_bad_settings_name_the_setting(setting, value):
    with pytest.raises(ValueError, match=rf"data\.{setting}"):
        make(**{setting: value})


# ----------------------------------------------------------------- SimulatedEEGCorpus
EEG = {"subjects": (0, 1), "n_stimuli": 22, "image_size": 16, "n_channels": 8, "seed": 0}


def test_eeg_corpus_default_is_the_benchmark_training_trials(cache_dir):
    dm = SimulatedEEGCorpus(cache_dir=cache_dir, **EEG)
    dm.setup()
    brains, subjects = [], []
    for s in (0, 1):
        ds = SimulatedDataModule(modality="eeg", subject=s, n_stimuli=22, image_size=16, n_channels=8, seed=0,
                                 cache_dir=cache_dir).dataset("train", "single")
        brains.append(ds.brain)
        subjects.append(ds.subject)
    brain, subject = torch.cat(brains), torch.cat(subjects)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(brain)))
    n_val = int(round(0.1 * len(brain)))
    assert torch.equal(dm.dataset("val").brain, brain[order[:n_val]])
    assert torch.equal(dm.dataset("train").brain, brain[order[n_val:]])
    assert torch.equal(dm.dataset("train").subject, subject[order[n_val:]])


def test_eeg_corpus_spontaneous_subjects(cache_dir):
    dm = SimulatedEEGCorpus(cache_dir=cache_dir, n_spontaneous_subjects=3, windows_per_subject=30, n_sources=4,
                            shared=0.5, **EEG)
    dm.setup()
    windows = {s: torch.cat([dm.dataset(p).brain[dm.dataset(p).subject == s] for p in ("train", "val")])
               for s in (0, 1, 1000, 1001, 1002)}
    assert [len(windows[s]) for s in (1000, 1001, 1002)] == [30, 30, 30]
    assert len(dm.dataset("train")) + len(dm.dataset("val")) == 90 + len(windows[0]) + len(windows[1])
    assert windows[1000].shape[1:] == dm.brain_shape == (8, 64)
    expected = sources.eeg_spontaneous(30, 8, 128.0, 0.5, 1.0, 0, 1001, n_sources=4, shared=0.5)
    got = windows[1001].numpy()
    assert sorted(map(bytes, got)) == sorted(map(bytes, expected))  # the same windows, in shuffled order
    bench = SimulatedDataModule(modality="eeg", subject=0, n_stimuli=22, image_size=16, n_channels=8, seed=0,
                                n_sources=4, shared=0.5, cache_dir=cache_dir)
    assert torch.equal(windows[0].sort(0).values, bench.dataset("train", "single").brain.sort(0).values)
    with pytest.raises(ValueError, match=r"data\.n_spontaneous_subjects"):
        SimulatedEEGCorpus(cache_dir=cache_dir, n_spontaneous_subjects=-1, **EEG)
    with pytest.raises(ValueError, match=r"data\.windows_per_subject"):
        SimulatedEEGCorpus(cache_dir=cache_dir, n_spontaneous_subjects=1, windows_per_subject=0, **EEG)
    with pytest.raises(ValueError, match=r"data\.subjects"):
        SimulatedEEGCorpus(cache_dir=cache_dir, n_spontaneous_subjects=2, **{**EEG, "subjects": (0, 1001)})
