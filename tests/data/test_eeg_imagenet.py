"""EEGImageNetDataModule on small files in the published layout: .pth records, split files and JPEG folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.interpolate import interp1d

from brain2img.data import schema
from brain2img.data.eeg_imagenet import EEGImageNetDataModule
from brain2img.data.eeg_imagenet import datamodule as eeg_imagenet
from tests.builders.eeg_imagenet import (
    N_IMG,
    N_REC,
    SUBJECTS,
    SYNSETS,
    build,
    centre_colour,
    per_class,
    record_number,
    write_splits,
)


def module(tmp_path, files, splits_path=None, **kw) -> EEGImageNetDataModule:
    kw = {"n_channels": 4, "image_size": 16, "batch_size": 5, "cache_dir": str(tmp_path / "cache"), **kw}
    if splits_path is None:
        kw.setdefault("split", "stimulus")
    return EEGImageNetDataModule(files["eeg"], splits_path, files["root"], **kw)


def served(dm, split):
    """(record index, stimulus id, subject, label) of every trial of a split, single trials."""
    ds = dm.dataset(split, "single")
    d = dm._ensure_loaded()
    trials = np.flatnonzero(np.isin(d.trial_stimulus, d.splits[split]))
    return dm.trial_records[trials], d.stimulus_ids[ds.stimulus.numpy()], ds.subject.numpy(), ds


def reference_resample(eeg: torch.Tensor, t0=20, t1=460, n_out=512) -> np.ndarray:
    """DreamDiffusion's EEGDataset: slice, then scipy interp1d from linspace(0, 1, n) onto linspace(0, 1, 512)."""
    seg = eeg.numpy().astype(np.float64)[:, t0:t1]
    return interp1d(np.linspace(0, 1, seg.shape[-1]), seg)(np.linspace(0, 1, n_out))


# ------------------------------------------------------------------------------------------------ behaviour
def test_batch_schema_and_shapes_with_128_channels(tmp_path):
    files = build(tmp_path, n_channels=128)
    splits = write_splits(tmp_path, per_class((0, 1)), per_class((2,)), per_class((3,)))
    dm = EEGImageNetDataModule(files["eeg"], splits, files["root"], subject=1, batch_size=4,
                               cache_dir=str(tmp_path / "cache"))
    assert (dm.modality, dm.brain_shape, dm.image_size) == ("eeg", (128, 512), 64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(schema.SAMPLE_KEYS)
    assert batch["brain"].shape == (4, 128, 512) and batch["brain"].dtype == torch.float32
    assert batch["image"].shape == (4, 3, 64, 64)
    all_images, all_ids = dm.stimulus_images(("train", "val", "test"))
    for img, sid in zip(batch["image"], batch["stimulus_id"].tolist(), strict=True):
        assert torch.equal(img, all_images[all_ids.tolist().index(sid)])
    assert (batch["subject"] == 1).all()
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 3 and len(dm.dataset("test")) == 3
    test = next(iter(dm.test_dataloader()))
    assert test["brain"].shape == (3, 128, 512)


def test_slice_and_resampling_match_scipy_and_sfreq(tmp_path):
    def ramp(data):  # channel 0 of record 5 holds its sample index in ms: the resampled spacing is 1000 / sfreq
        data["dataset"][5]["eeg"][0] = torch.arange(data["dataset"][5]["eeg"].shape[1], dtype=torch.float32)

    files = build(tmp_path, mutate=ramp, legacy=True)  # the legacy (non-zip) torch format loads too
    dm = module(tmp_path, files, subject=None, split="block")
    records = files["data"]["dataset"]
    n_checked = 0
    for split in ("train", "val", "test"):
        rec_idx, stim_ids, subjects, ds = served(dm, split)
        for j, (r, sid, subj) in enumerate(zip(rec_idx, stim_ids, subjects, strict=True)):
            (match,) = [i for i, rec in enumerate(records) if rec["image"] == sid and rec["subject"] == subj]
            assert match == r
            np.testing.assert_allclose(ds[j]["brain"].numpy(), reference_resample(records[r]["eeg"]),
                                       rtol=1e-5, atol=1e-5)
            n_checked += 1
            if r == 5:
                ramp_out = ds[j]["brain"][0].numpy().astype(np.float64)
    assert n_checked == N_REC
    assert ramp_out[0] == 20 and ramp_out[-1] == 459
    np.testing.assert_allclose(np.diff(ramp_out) * dm.sfreq / 1000.0, 1.0, rtol=1e-4)
    assert dm.sfreq == pytest.approx(1000.0 * 511 / 439)


def test_length_filter_keeps_inclusive_bounds(tmp_path):
    lengths = {0: 449, 5: 450, 14: 600, 19: 601, 9: 610, 22: 440}
    files = build(tmp_path, lengths=lengths)
    dm = module(tmp_path, files, subject=None, time_slice=(20, 440), length_range=(450, 600))
    dm.setup()
    assert set(dm.trial_records.tolist()) == set(range(N_REC)) - {0, 19, 9, 22}
    records = files["data"]["dataset"]
    for split in ("train", "val", "test"):
        rec_idx, _, _, ds = served(dm, split)
        for j, r in enumerate(rec_idx):
            if r in (5, 14):
                want = reference_resample(records[r]["eeg"], 20, 440)
                np.testing.assert_allclose(ds[j]["brain"].numpy(), want, rtol=1e-5, atol=1e-5)


def test_subject_filter(tmp_path):
    files = build(tmp_path)
    dm = module(tmp_path, files, subject=2)
    dm.setup()
    assert dm.trial_records.tolist() == [record_number(2, c, k) for c in range(3) for k in range(N_IMG)]
    assert set(dm._ensure_loaded().trial_subject.tolist()) == {2}
    both = module(tmp_path, files, subject=None)
    both.setup()
    assert sorted(both.trial_records.tolist()) == list(range(N_REC))
    assert both.data_folder != dm.data_folder


def test_reference_split_filtered_indexing_points_into_the_subject_list(tmp_path):
    files = build(tmp_path, lengths={record_number(2, 1, 0): 610})  # a listed train record the length filter drops
    splits = write_splits(tmp_path, per_class((0, 1)), per_class((2,)), per_class((3,)))
    dm = module(tmp_path, files, splits, subject=2, split="reference", split_indexing="filtered")
    expected = {"train": {record_number(2, c, k) for c in range(3) for k in (0, 1)} - {record_number(2, 1, 0)},
                "val": {record_number(2, c, 2) for c in range(3)},
                "test": {record_number(2, c, 3) for c in range(3)}}
    for split, want in expected.items():
        rec_idx, stim_ids, subjects, _ = served(dm, split)
        assert set(rec_idx.tolist()) == want and len(rec_idx) == len(want)
        assert set(subjects.tolist()) == {2}
        assert sorted(stim_ids.tolist()) == sorted(files["data"]["dataset"][r]["image"] for r in want)
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["counts"]["train"] == {"in_split_file": 6, "after_subject_filter": 6, "after_length_filter": 5}


def test_reference_split_all_indexing_points_into_the_full_list(tmp_path):
    files = build(tmp_path)
    both = lambda ks: [record_number(s, c, k) for s in SUBJECTS for c in range(3) for k in ks]  # noqa: E731
    splits = write_splits(tmp_path, both((0, 1)), both((2,)), both((3,)), name="block_splits_by_image_all.pth")
    dm = module(tmp_path, files, splits, subject=None, split="reference", split_indexing="all")
    for split, ks in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        rec_idx, _, subjects, _ = served(dm, split)
        assert sorted(rec_idx.tolist()) == sorted(both(ks))
        assert sorted(subjects.tolist()) == sorted([1, 2] * (3 * len(ks)))
    # the same file with a subject keeps that subject's listed records; "filtered" would misread these indices
    one = module(tmp_path, files, splits, subject=2, split="reference", split_indexing="all")
    rec_idx, _, _, _ = served(one, "test")
    assert sorted(rec_idx.tolist()) == [record_number(2, c, 3) for c in range(3)]
    with pytest.raises(ValueError, match=r"'train'\] holds 6 index\(es\) that are not in \[0, 12\)"):
        module(tmp_path, files, splits, subject=2, split="reference").prepare_data()


def test_images_centre_cropped_resized_and_in_stimulus_order(tmp_path):
    files = build(tmp_path)
    dm = module(tmp_path, files, subject=None, image_size=16)
    images, ids = dm.stimulus_images(("train", "val", "test"))
    names = files["data"]["images"]
    assert ids.tolist() == list(range(len(names)))
    for img, sid in zip(images, ids.tolist(), strict=True):
        name = names[sid]
        with Image.open(f"{files['root']}/{name.split('_')[0]}/{name}.JPEG") as f:
            rgb = np.asarray(f.convert("RGB"))
        h, w = rgb.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(rgb[top : top + side, left : left + side])
        want = np.asarray(crop.resize((16, 16), Image.Resampling.BICUBIC))
        got = np.round(img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(got, want)
        assert np.abs(got.reshape(-1, 3).mean(0) - centre_colour(sid)).max() < 12  # no red margin left
    batch = next(iter(dm.val_dataloader()))
    for sid, label in zip(batch["stimulus_id"].tolist(), batch["label"].tolist(), strict=True):
        assert SYNSETS[label] == names[sid].split("_")[0]


def test_shuffled_labels_permute_training_pairs_only_and_are_seeded(tmp_path):
    files = build(tmp_path)
    kw = {"subject": None, "split": "block"}
    plain, shuf, again, other = (module(tmp_path, files, **kw),
                                 module(tmp_path, files, shuffled_labels=True, **kw),
                                 module(tmp_path, files, shuffled_labels=True, **kw),
                                 module(tmp_path, files, shuffled_labels=True, seed=1, **kw))
    assert plain.manifest_path == shuf.manifest_path  # the prepared copy is shared
    p, s = plain.dataset("train"), shuf.dataset("train")
    assert torch.equal(p.brain, s.brain) and torch.equal(p.subject, s.subject)
    assert not torch.equal(p.stimulus, s.stimulus)
    assert torch.equal(s.stimulus, again.dataset("train").stimulus)
    assert not torch.equal(s.stimulus, other.dataset("train").stimulus)
    for subj in SUBJECTS:
        m = p.subject == subj
        assert sorted(p.stimulus[m].tolist()) == sorted(s.stimulus[m].tolist())
    for split in ("val", "test"):
        a, b = plain.dataset(split), shuf.dataset(split)
        assert torch.equal(a.stimulus, b.stimulus) and torch.equal(a.brain, b.brain)


def test_block_split_holds_out_the_end_of_every_block(tmp_path):
    files = build(tmp_path)
    dm = module(tmp_path, files, subject=None, split="block")
    names = files["data"]["images"]
    seen_records, seen_stimuli = set(), set()
    for split, ks in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        rec_idx, stim_ids, _, _ = served(dm, split)
        assert sorted(rec_idx.tolist()) == sorted(record_number(s, c, k) for s in SUBJECTS for c in range(3)
                                                  for k in ks)
        assert {int(names[i].split("_")[1]) - 100 for i in stim_ids} == set(ks)
        assert not seen_records & set(rec_idx.tolist()) and not seen_stimuli & set(stim_ids.tolist())
        seen_records |= set(rec_idx.tolist())
        seen_stimuli |= set(stim_ids.tolist())
    rec_idx, _, _, _ = served(dm, "train")
    blocks = {(files["data"]["dataset"][r]["subject"], files["data"]["dataset"][r]["label"]) for r in rec_idx}
    assert blocks == {(s, c) for s in SUBJECTS for c in range(3)}
    summary = json.loads(dm.manifest_path.read_text())["block_design"]
    assert summary["n_blocks"] == summary["n_subject_class_pairs"] == 6 and summary["blocks_without_train"] == 0
    pos = summary["mean_position"]
    assert pos["train"] < pos["val"] < pos["test"]


def test_stimulus_split_is_seeded_by_image(tmp_path):
    files = build(tmp_path)
    a, b = module(tmp_path, files, subject=None, seed=3), module(tmp_path, files, subject=None, seed=3)
    ids = {split: set(served(a, split)[1].tolist()) for split in ("train", "val", "test")}
    assert ids == {split: set(served(b, split)[1].tolist()) for split in ("train", "val", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["val"] and not ids["val"] & ids["test"]
    assert len(ids["train"] | ids["val"] | ids["test"]) == len(SYNSETS) * N_IMG


def test_cache_is_atomic_checksummed_and_reused(tmp_path, monkeypatch):
    files = build(tmp_path)
    dm = module(tmp_path, files, subject=1)
    dm.prepare_data()
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["sources"]["eeg"]["sha256"] == hashlib.sha256(open(files["eeg"], "rb").read()).hexdigest()
    for name, digest in manifest["checksums"].items():
        assert hashlib.sha256((dm.data_folder / name).read_bytes()).hexdigest() == digest
    assert manifest["counts"]["trials"] == 12 and manifest["repeats"]["n_trials"] == 12
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [dm.data_folder.name]  # no temporary folder left
    assert isinstance(module(tmp_path, files, subject=1)._load().brain, np.memmap)

    def fail(*args, **kwargs):
        raise AssertionError("the source file was read again")

    monkeypatch.setattr(eeg_imagenet, "read_eeg_file", fail)
    again = module(tmp_path, files, subject=1)
    again.prepare_data()
    again.setup()
    assert len(again.dataset("train")) > 0
    monkeypatch.undo()
    np.save(dm.data_folder / "labels.npy", np.zeros(12, dtype=np.int64))
    with pytest.raises(ValueError, match=r"checksum mismatch for cached file '.*labels\.npy'"):
        module(tmp_path, files, subject=1).setup()
    files2 = build(tmp_path, lengths={0: 510})  # changed source -> another folder
    assert module(tmp_path, files2, subject=1).data_folder != dm.data_folder


# ------------------------------------------------------------------------------------------------ errors
def _drop(key):
    return lambda d: d.pop(key)


def _set(field_path, value):
    def mutate(d):
        rec = d["dataset"][field_path[0]]
        if value is None:
            rec.pop(field_path[1])
        else:
            rec[field_path[1]] = value(rec) if callable(value) else value
    return mutate


def _nan(i, value):
    def mutate(d):
        d["dataset"][i]["eeg"][1, 100] = value
    return mutate


@pytest.mark.parametrize(("mutate", "message"), [
    (_drop("dataset"), r"eeg_5_95_std\.pth' lacks the key\(s\) \['dataset'\]"),
    (_drop("labels"), r"eeg_5_95_std\.pth' lacks the key\(s\) \['labels'\]"),
    (_drop("images"), r"eeg_5_95_std\.pth' lacks the key\(s\) \['images'\]"),
    (_set((5, "label"), None), r"record 5 of 'dataset' lacks the field\(s\) \['label'\]"),
    (_set((3, "eeg"), lambda r: r["eeg"][0]), r"record 3 field 'eeg' has shape \(\d+,\), expected \(4, L\)"),
    (_set((3, "eeg"), lambda r: r["eeg"][:3]), r"record 3 field 'eeg' has shape \(3, \d+\), expected \(4, L\)"),
    (_set((2, "image"), 99), r"record 2 field 'image' = 99 is out of range: 'images' has 12"),
    (_set((2, "label"), 3), r"record 2 field 'label' = 3 is out of range: 'labels' has 3"),
    (_set((4, "subject"), "one"), r"record 4 field 'subject' must be an integer"),
    (_set((4, "label"), 2), r"records 4 and 16 show image \d+ but have different 'label' values"),
    (_nan(7, float("nan")), r"record 7 field 'eeg' has NaN or Inf within samples \[20, 460\)"),
    (_nan(8, float("inf")), r"record 8 field 'eeg' has NaN or Inf"),
    (lambda d: d.update(extra=np.zeros(2)),
     r"eeg_5_95_std\.pth' as PyTorch \(torch\.save\): UnpicklingError: torch\.load\(weights_only=True\) refused"),
])
def test_bad_eeg_file_errors_name_file_and_field(tmp_path, mutate, message):
    files = build(tmp_path, mutate=mutate)
    dm = module(tmp_path, files, subject=None)
    with pytest.raises(ValueError, match=message):
        dm.prepare_data()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_image_of_another_class_than_its_label(tmp_path):
    files = build(tmp_path, mutate=_set((4, "label"), 2))
    with pytest.raises(ValueError, match=r"record 4 shows image 'n02000002_100' \('images'\[\d+\]\) but its 'label' 2 "
                                         r"is class 'n03000003'"):
        module(tmp_path, files, subject=1).prepare_data()


def test_missing_files_and_folders(tmp_path):
    files = build(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"EEG file not found: '.*nope\.pth' \(eeg_path\)"):
        EEGImageNetDataModule(str(tmp_path / "nope.pth"), None, files["root"], split="stimulus")
    with pytest.raises(FileNotFoundError, match=r"split file not found: '.*none\.pth'"):
        EEGImageNetDataModule(files["eeg"], str(tmp_path / "none.pth"), files["root"])
    with pytest.raises(FileNotFoundError, match=r"image folder not found: '.*no_images' \(image_root"):
        EEGImageNetDataModule(files["eeg"], None, str(tmp_path / "no_images"), split="stimulus")
    with pytest.raises(ValueError, match=r"split='reference' needs splits_path"):
        EEGImageNetDataModule(files["eeg"], None, files["root"])
    name = files["data"]["images"][5]
    (tmp_path / "imageNet_images" / name.split("_")[0] / f"{name}.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match=rf"stimulus image not found: '.*{name}\.JPEG'.*'images'\[5\]"):
        module(tmp_path, files, subject=None).prepare_data()


def test_filters_that_leave_nothing_and_short_records(tmp_path):
    files = build(tmp_path, lengths={3: 455})
    with pytest.raises(ValueError, match=r"no records left after the subject filter: no record has 'subject' == 9 "
                                         r"\(subjects in the file: \[1, 2\]\)"):
        module(tmp_path, files, subject=9).prepare_data()
    with pytest.raises(ValueError, match=r"no records left after the length filter 700 <= L <= 800"):
        module(tmp_path, files, subject=1, length_range=(700, 800)).prepare_data()
    with pytest.raises(ValueError, match=r"record 3 has L = 455 samples, shorter than the end of time_slice "
                                         r"\(20, 460\)"):
        module(tmp_path, files, subject=1).prepare_data()


def test_bad_split_files(tmp_path):
    files = build(tmp_path)
    ok = (per_class((0, 1)), per_class((2,)), per_class((3,)))
    with pytest.raises(ValueError, match=r"split_index 1 is out of range, the file has 1 split"):
        module(tmp_path, files, write_splits(tmp_path, *ok), subject=1, split="reference",
               split_index=1).prepare_data()
    bad = write_splits(tmp_path, [0, 1, 12], *ok[1:], name="bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth': 'splits'\[0\]\['train'\] holds 1 index\(es\) that are not in "
                                         r"\[0, 12\) \(first: 12\); the indices point into the records of subject 1"):
        module(tmp_path, files, bad, subject=1, split="reference").prepare_data()
    overlap = write_splits(tmp_path, [0, 1, 3], *ok[1:], name="overlap.pth")
    with pytest.raises(ValueError, match=r"overlap\.pth': 'splits'\[0\] has 1 index\(es\) in both 'train' and 'test'"):
        module(tmp_path, files, overlap, subject=1, split="reference").prepare_data()
    # an image whose subject-1 record is in train and subject-2 record in test cannot be split by image
    mixed = write_splits(tmp_path, [0, 1], [2], [3, record_number(2, 0, 0)], name="mixed.pth")
    with pytest.raises(ValueError, match=r"mixed\.pth': image 'n01000001_100' .* has records in both 'train' and "
                                         r"'test'"):
        module(tmp_path, files, mixed, subject=None, split="reference", split_indexing="all").prepare_data()
    missing_key = tmp_path / "nokey.pth"
    torch.save({"splits": [{"train": [0], "test": [1]}]}, missing_key)
    with pytest.raises(ValueError, match=r"nokey\.pth': 'splits'\[0\] lacks the key\(s\) \['val'\]"):
        module(tmp_path, files, str(missing_key), subject=1, split="reference").prepare_data()
