"""brain2img.io: config hashes and file checksums that never change, atomic writes and staging folders."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brain2img import io as bio
from tests.builders.malformed import write


# first bytes match no magic; the seed keeps the HDF5 user-block offsets (512, 1024, 2048) signature-free
# ------------------------------------------------------------------------------------------------------- hashing
def reference_config_hash(config: dict) -> str:
    """``brain2img.data.splits.config_hash`` as it was before it moved here: caches are named by it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CONFIGS = [
    ({}, "44136fa355b3678a"),
    ({"a": 1, "b": [2, 3]}, "efbd0040190fb087"),
    ({"seed": 0, "path": Path("/data/nsd"), "lr": 1e-4, "name": "sübject", "nested": {"z": None, "y": True}},
     "7d30c098197834ec"),
]


@pytest.mark.parametrize("config,expected", CONFIGS)
def test_config_hash_never_changes(config, expected):
    assert bio.config_hash(config) == reference_config_hash(config) == expected
    assert bio.config_hash(dict(reversed(list(config.items())))) == expected


def test_config_hash_differs_by_value():
    assert bio.config_hash({"a": 1}) != bio.config_hash({"a": 2})


@pytest.mark.parametrize("size", [0, 1, 1000, 5 * 1024 + 3])
def test_sha256_file_equals_hashlib(tmp_path, size):
    data = np.random.default_rng(size).bytes(size)
    path = write(tmp_path / "f.bin", data)
    assert bio.sha256_file(path) == bio.sha256_file(path, chunk=7) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------- atomic writes
def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = write(tmp_path / "ckpt.pth", b"old")
    for mode in ("wb", "w"):
        with pytest.raises(RuntimeError, match="boom"), bio.atomic_write(target, mode) as handle:
            handle.write(b"new, half" if mode == "wb" else "new, half")
            raise RuntimeError("boom")
        assert target.read_bytes() == b"old"
        assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_interrupt_and_missing_output(tmp_path):
    target = tmp_path / "a.npy"
    with pytest.raises(KeyboardInterrupt), bio.atomic_path(target) as tmp:
        np.save(tmp, np.arange(3))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="nothing was written"), bio.atomic_path(target) as tmp:
        tmp.unlink()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_with_real_writers(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    with bio.atomic_path(tmp_path / "sub" / "a.npy") as tmp:  # the folder is created; np.save adds no ".npy"
        np.save(tmp, arr)
    with bio.atomic_path(tmp_path / "m.pth") as tmp:
        torch.save({"w": torch.ones(2)}, tmp)
    with bio.atomic_path(tmp_path / "x.nii.gz") as tmp:  # nibabel picks the format from the suffixes
        nib.save(nib.Nifti1Image(arr[..., None], np.eye(4)), tmp)
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "a.npy"), arr)
    assert torch.equal(torch.load(tmp_path / "m.pth")["w"], torch.ones(2))
    np.testing.assert_array_equal(bio.load_nifti_array(tmp_path / "x.nii.gz", "test")[..., 0], arr)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.npy", "m.pth", "sub", "x.nii.gz"]


def test_write_json_and_text_atomic(tmp_path):
    data = {"b": [1, 2], "a": {"x": "é"}}
    bio.write_json_atomic(tmp_path / "manifest.json", data)
    assert (tmp_path / "manifest.json").read_text() == json.dumps(data, indent=1)
    bio.write_text_atomic(tmp_path / "note.txt", "héllo\n")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "héllo\n"
    (tmp_path / "plain.txt").write_text("x")  # same permissions as a plain write (umask), not mkstemp's 0600
    assert (tmp_path / "note.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "note.txt", "plain.txt"]


# ------------------------------------------------------------------------------------------------ staging folder
def stage_tmp(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def test_staging_folder_publishes_on_success(tmp_path):
    final = tmp_path / "cache" / "nsd-abc"
    stale = stage_tmp(final)
    stale.mkdir(parents=True)
    (stale / "junk.npy").write_bytes(b"half")
    with bio.staging_folder(final) as tmp:
        assert tmp == stale and list(tmp.iterdir()) == []  # the stale one was removed
        assert not final.exists()
        np.save(tmp / "brain.npy", np.zeros(3))
        bio.write_json_atomic(tmp / "manifest.json", {"ok": True})
    assert sorted(p.name for p in final.iterdir()) == ["brain.npy", "manifest.json"]
    assert list(final.parent.iterdir()) == [final]


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_staging_folder_removes_tmp_on_exception(tmp_path, exc):
    final = tmp_path / "cache"
    with pytest.raises(exc), bio.staging_folder(final) as tmp:
        (tmp / "manifest.json").write_text("{}")
        raise exc("stop")
    assert list(tmp_path.iterdir()) == []


def test_staging_folder_keeps_a_complete_folder_published_meanwhile(tmp_path):
    final = tmp_path / "cache"
    with bio.staging_folder(final, marker="checksums.json") as tmp:
        (tmp / "checksums.json").write_text('{"ours": 1}')
        final.mkdir()  # another process wins the race
        (final / "data.npy").write_bytes(b"theirs")
        (final / "checksums.json").write_text('{"theirs": 1}')
    assert (final / "checksums.json").read_text() == '{"theirs": 1}'
    assert list(tmp_path.iterdir()) == [final]


def test_staging_folder_refuses_incomplete_results(tmp_path):
    final = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="without its 'manifest.json'"), bio.staging_folder(final) as tmp:
        (tmp / "brain.npy").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "leftover").write_text("x")  # exists, but without the marker
    with pytest.raises(FileExistsError, match="incomplete"), bio.staging_folder(final) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert list(tmp_path.iterdir()) == [final] and list(final.iterdir()) == [final / "leftover"]
