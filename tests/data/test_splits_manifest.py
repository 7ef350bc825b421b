"""Splits by stimulus, the manifest and checksums."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from brain2img.data.manifest import build_manifest, read_manifest, verify_checksums
from brain2img.data.splits import split_stimuli, split_trials
from brain2img.io import config_hash, sha256_file, write_json_atomic

LABELS = np.arange(220) % 11


def test_disjoint_complete_and_sized():
    splits = split_stimuli(LABELS, val_fraction=0.1, test_fraction=0.2, seed=0)
    parts = [set(splits[k].tolist()) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 220 and set.union(*parts) == set(range(220))
    assert (len(parts[0]), len(parts[1]), len(parts[2])) == (154, 22, 44)


def test_seeded():
    a = split_stimuli(LABELS, seed=3)
    b = split_stimuli(LABELS, seed=3)
    c = split_stimuli(LABELS, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_stratified_by_label():
    labels = np.repeat(np.arange(11), 20)
    splits = split_stimuli(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    for name, expected in (("test", 4), ("val", 2)):
        counts = np.bincount(labels[splits[name]], minlength=11)
        assert counts.min() >= expected - 1 and counts.max() <= expected + 1, (name, counts)


def test_unknown_labels_and_trials():
    splits = split_stimuli(np.full(10, -1), val_fraction=0.0, test_fraction=0.3, seed=0)
    assert len(splits["val"]) == 0 and len(splits["test"]) == 3
    trial_stim = np.tile(np.arange(10), 2)
    trials = split_trials(trial_stim, splits)
    assert set(trial_stim[trials["test"]].tolist()) == set(splits["test"].tolist())
    assert len(trials["test"]) == 6 and not set(trials["test"].tolist()) & set(trials["train"].tolist())


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.5, 0.5), (0.0, 1.2)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match="val_fraction"):
        split_stimuli(LABELS, val_fraction=val, test_fraction=test)


def test_too_few_stimuli():
    with pytest.raises(ValueError, match="no training stimulus"):
        split_stimuli(np.zeros(2), val_fraction=0.1, test_fraction=0.2)


def test_config_hash():
    assert config_hash({"a": 1, "b": [2, 3]}) == config_hash({"b": [2, 3], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_manifest_round_trip_and_checksums(tmp_path):
    arr = np.arange(12, dtype=np.float32)
    np.save(tmp_path / "brain.npy", arr)
    digest = hashlib.sha256((tmp_path / "brain.npy").read_bytes()).hexdigest()
    assert sha256_file(tmp_path / "brain.npy") == digest
    labels = np.arange(10) % 2
    splits = split_stimuli(labels, seed=0)
    trial_stim = np.tile(np.arange(10), 3)
    manifest = build_manifest({"x": 1}, 0, np.arange(100, 110), splits, trial_stim, {"brain.npy": digest})
    write_json_atomic(tmp_path / "manifest.json", manifest)
    back = read_manifest(tmp_path / "manifest.json")
    assert back == json.loads(json.dumps(manifest))
    assert back["config_hash"] == config_hash({"x": 1}) and back["seed"] == 0
    assert back["splits"]["test"]["stimulus_ids"] == (100 + splits["test"]).tolist()
    assert back["splits"]["test"]["repeats"] == [3] * len(splits["test"])
    assert sorted(sum((back["splits"][k]["trial_ids"] for k in back["splits"]), [])) == list(range(30))
    verify_checksums(tmp_path, back["checksums"])
    np.save(tmp_path / "brain.npy", arr + 1)
    with pytest.raises(ValueError, match=r"checksum mismatch.*brain\.npy"):
        verify_checksums(tmp_path, back["checksums"])
    (tmp_path / "brain.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"brain\.npy"):
        verify_checksums(tmp_path, back["checksums"])


def test_bad_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path / "missing.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.json' as JSON: JSONDecodeError"):
        read_manifest(tmp_path / "m.json")
    (tmp_path / "m.json").write_text('{"config": {}}')
    with pytest.raises(ValueError, match="lacks"):
        read_manifest(tmp_path / "m.json")
