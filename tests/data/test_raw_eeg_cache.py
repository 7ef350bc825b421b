"""RawEEGDataModule: the window cache (reuse, invalidation, corruption, atomic writes), errors that name the
recording, and the loaders and their train/val split."""

from __future__ import annotations

import json
import pickle

import mne
import numpy as np
import pytest
import torch

from brain2img.data import schema
from brain2img.data.raw_eeg.files import resolve_files
from brain2img.data.raw_eeg.windows import split_windows
from brain2img.data.window_cache import WindowCacheWriter, open_window_cache
from tests.builders.raw_eeg import cached, make_dm, noise, write_fif


# ----------------------------------------------------------------------------------------------------- cache
def test_cache_reused_without_reading_and_invalidated(tmp_path, monkeypatch):
    path = write_fif(tmp_path / "a_raw.fif", noise(3, 10.0, 200.0), 200.0)
    first = make_dm(str(path), tmp_path / "c")
    first.prepare_data()
    windows = np.array(open_window_cache(first.cache_folder).windows)

    def boom(*args, **kwargs):
        raise AssertionError("mne.io.read_raw was called")

    monkeypatch.setattr(mne.io, "read_raw", boom)
    again = make_dm(str(path), tmp_path / "c")
    again.prepare_data()
    again.setup()
    assert again.cache_folder == first.cache_folder
    np.testing.assert_array_equal(open_window_cache(again.cache_folder).windows, windows)
    # a changed setting or changed file content needs a new cache (so MNE is called)
    changed = make_dm(str(path), tmp_path / "c", l_freq=2.0)
    assert changed.cache_folder != first.cache_folder
    with pytest.raises(ValueError, match="read_raw was called"):
        changed.prepare_data()
    # split and loader settings do not change the cache
    assert make_dm(str(path), tmp_path / "c", seed=5, val_fraction=0.3, batch_size=3).cache_folder == first.cache_folder
    monkeypatch.undo()
    write_fif(path, noise(3, 10.0, 200.0, seed=1), 200.0)
    assert make_dm(str(path), tmp_path / "c").cache_folder != first.cache_folder


def test_corrupted_cache_is_detected(tmp_path):
    path = write_fif(tmp_path / "a_raw.fif", noise(2, 10.0, 200.0), 200.0)
    dm = make_dm(str(path), tmp_path / "c")
    dm.prepare_data()
    arr = np.load(dm.cache_folder / "windows.npy", mmap_mode="r+")
    arr[0, 0, 0] += 1.0
    arr.flush()
    del arr
    with pytest.raises(ValueError, match="checksum mismatch.*windows.npy"):
        make_dm(str(path), tmp_path / "c").prepare_data()


def test_failed_build_leaves_no_folder(tmp_path):
    good = write_fif(tmp_path / "a_raw.fif", noise(2, 10.0, 200.0), 200.0)
    data = noise(2, 10.0, 200.0)
    data[1, 700] = np.nan
    bad = write_fif(tmp_path / "b_raw.fif", data, 200.0)
    cache_dir = tmp_path / "c"
    with pytest.raises(ValueError, match=r"b_raw\.fif.*non-finite.*channel 'EEG001' at sample 700"):
        make_dm([str(good), str(bad)], cache_dir).prepare_data()  # fails after a_raw.fif's windows were written
    assert list(cache_dir.iterdir()) == []


def test_writer_is_atomic(tmp_path):
    folder = tmp_path / "cache" / "x"
    with pytest.raises(RuntimeError, match="mid-way"):
        with WindowCacheWriter(folder, 4, 2, 3) as writer:
            writer.write(np.ones((2, 2, 3), np.float32), 0, 0, np.array([0, 3]))
            raise RuntimeError("mid-way")
    assert list(folder.parent.iterdir()) == []
    with pytest.raises(RuntimeError, match="without commit"), WindowCacheWriter(folder, 4, 2, 3) as writer:
        writer.write(np.ones((2, 2, 3), np.float32), 0, 0, np.array([0, 3]))
        with pytest.raises(RuntimeError, match="2 of 4"):
            writer.commit({"files": [], "config": {}})
    assert list(folder.parent.iterdir()) == []  # an incomplete cache is never published
    with WindowCacheWriter(folder, 2, 2, 3) as writer:
        writer.write(np.full((2, 2, 3), 7, np.float32), 3, 1, np.array([0, 3]))
        writer.commit({"files": [], "config": {}})
    cache = open_window_cache(folder)
    assert [p.name for p in folder.parent.iterdir()] == ["x"]
    assert np.all(cache.windows == 7) and cache.subjects.tolist() == [3, 3] and cache.sources.tolist() == [1, 1]


# ----------------------------------------------------------------------------------------------------- errors
def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.edf"):
        make_dm(str(tmp_path / "nope.edf"), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pattern .*\*\.bdf.* matches no file"):
        make_dm(str(tmp_path / "*.bdf"), tmp_path)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"unsupported EEG file .*x\.csv"):
        make_dm(str(tmp_path / "x.csv"), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"gone_raw\.fif.*line 2 of"):
        (tmp_path / "list.txt").write_text("# recordings\n gone_raw.fif\n")
        make_dm(str(tmp_path / "list.txt"), tmp_path)


def test_unreadable_edf(tmp_path):
    path = tmp_path / "garbage.edf"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"cannot read EEG recording .*garbage\.edf") as info:
        make_dm(str(path), tmp_path / "c").prepare_data()
    assert info.value.__cause__ is not None


def test_too_short_recording(tmp_path):
    path = write_fif(tmp_path / "short_raw.fif", noise(2, 1.0, 200.0), 200.0)  # 1 s -> 100 samples at 100 Hz
    with pytest.raises(ValueError, match=r"short_raw\.fif.*shorter than one window: 100 samples at 100 Hz.*=128"):
        make_dm(str(path), tmp_path / "c").prepare_data()


def test_missing_pick_channel(tmp_path):
    path = write_fif(tmp_path / "p_raw.fif", noise(2, 5.0, 200.0), 200.0, ["Fz", "Cz"])
    with pytest.raises(ValueError, match=r"p_raw\.fif.*lacks the picked channel.*'Oz'"):
        make_dm(str(path), tmp_path / "c", picks=["Fz", "Oz"]).prepare_data()


def test_frequency_settings_errors(edf_dir, tmp_path):
    path = write_fif(tmp_path / "a_raw.fif", noise(2, 5.0, 200.0), 200.0)
    with pytest.raises(ValueError, match=r"h_freq=95.*Nyquist.*sfreq=100"):
        make_dm(str(path), tmp_path, h_freq=95.0)
    with pytest.raises(ValueError, match="l_freq=30.0 must be below h_freq=20.0"):
        make_dm(str(path), tmp_path, l_freq=30.0, h_freq=20.0)
    with pytest.raises(ValueError, match=r"h_freq=95 Hz.*Nyquist frequency \(64 Hz\) of recording .*test_subsecond"):
        make_dm(str(edf_dir / "test_subsecond.edf"), tmp_path, sfreq=250.0, h_freq=95.0).prepare_data()
    for field, value in (("channel_policy", "wrap"), ("zscore", "global"), ("subject_from", "name")):
        with pytest.raises(ValueError, match=field):
            make_dm(str(path), tmp_path, **{field: value})


# ----------------------------------------------------------------------------------------------------- loading
def test_dataloader_batches_and_file_split(tmp_path):
    for i in range(4):
        write_fif(tmp_path / f"rec{i}_raw.fif", noise(3, 5.0 + i, 200.0, seed=i), 200.0)
    dm = make_dm(str(tmp_path / "rec*_raw.fif"), tmp_path / "c", val_fraction=0.25, seed=3)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {schema.BRAIN, schema.SUBJECT, schema.INDEX}
    assert batch[schema.BRAIN].shape == (8, 16, 128) and batch[schema.BRAIN].dtype == torch.float32
    assert batch[schema.SUBJECT].dtype == torch.int64 and batch[schema.INDEX].dtype == torch.int64
    cache = open_window_cache(dm.cache_folder)
    train, val = dm.split_indices["train"], dm.split_indices["val"]
    assert sorted(np.r_[train, val].tolist()) == list(range(len(cache.windows)))
    val_files = set(cache.sources[val].tolist())
    assert len(val_files) == 1 and val_files.isdisjoint(cache.sources[train].tolist())
    np.testing.assert_array_equal(batch[schema.BRAIN][0], cache.windows[train[batch[schema.INDEX][0]]])
    assert batch[schema.SUBJECT][0] == cache.subjects[train[batch[schema.INDEX][0]]]
    # seeded: the same shuffle again; the split is recorded in the manifest
    again = next(iter(dm.train_dataloader()))
    assert torch.equal(again[schema.INDEX], batch[schema.INDEX])
    assert not torch.equal(batch[schema.INDEX], torch.arange(8))
    manifest = json.loads((dm.cache_folder / "manifest.json").read_text())
    assert manifest["splits"]["seed=3,val_fraction=0.25"]["val_files"] == sorted(val_files)
    n_val = sum(len(b[schema.INDEX]) for b in dm.val_dataloader())
    assert n_val == len(val)
    # worker processes get the dataset without the memory-mapped array (it is reopened there, never copied)
    data = dm.dataset("train")
    data[0]
    clone = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < 10_000 and clone._windows is None
    assert torch.equal(clone[3][schema.BRAIN], data[3][schema.BRAIN])


def test_single_recording_contiguous_block_split(tmp_path):
    path = write_fif(tmp_path / "one_raw.fif", noise(2, 20.0, 100.0), 100.0)
    dm = make_dm(str(path), tmp_path / "c", n_times=100, window_stride=50, val_fraction=0.2)
    dm.setup()
    starts = open_window_cache(dm.cache_folder).starts
    train, val = dm.split_indices["train"], dm.split_indices["val"]
    assert len(starts) == (2000 - 100) // 50 + 1 and len(val) == round(0.2 * len(starts))
    assert np.array_equal(val, np.arange(val[0], val[0] + len(val)))
    lo, hi = starts[val[0]], starts[val[-1]] + 100
    assert np.all((starts[train] + 100 <= lo) | (starts[train] >= hi))  # no training sample inside the val span


def test_split_windows_is_seeded():
    sources = np.repeat(np.arange(10), 5)
    starts = np.tile(np.arange(5) * 10, 10)
    a, _ = split_windows(sources, starts, 10, 10, 0.3, seed=1)
    b, _ = split_windows(sources, starts, 10, 10, 0.3, seed=1)
    c, _ = split_windows(sources, starts, 10, 10, 0.3, seed=2)
    assert np.array_equal(a["val"], b["val"]) and len(np.unique(sources[a["val"]])) == 3
    assert not np.array_equal(a["val"], c["val"])


def test_list_file_and_subjects_from_parent(tmp_path):
    for sub, run in (("sub-01", 1), ("sub-01", 2), ("sub-02", 1)):
        (tmp_path / sub).mkdir(exist_ok=True)
        write_fif(tmp_path / sub / f"run{run}_raw.fif", noise(2, 3.0, 200.0, seed=run), 200.0)
    listing = tmp_path / "files.txt"
    listing.write_text("# corpus\nsub-02/run1_raw.fif\n\nsub-01/run*_raw.fif\n")
    assert [p.relative_to(tmp_path).as_posix() for p in resolve_files(str(listing))] == \
        ["sub-01/run1_raw.fif", "sub-01/run2_raw.fif", "sub-02/run1_raw.fif"]
    dm = make_dm(str(listing), tmp_path / "c", subject_from="parent")
    cache = cached(dm)
    assert cache.manifest["subject_names"] == ["sub-01", "sub-02"]
    assert [r["subject"] for r in cache.manifest["files"]] == [0, 0, 1]
    np.testing.assert_array_equal(cache.subjects, np.array([0, 0, 1])[cache.sources])
