"""brain2img.io openers on malformed files built here: errors name the file, the format and the cause; valid files
round-trip."""

from __future__ import annotations

import fractions
import json
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from brain2img import io as bio
from brain2img.io import FileFormatError
from tests.builders.malformed import GARBAGE, MAT73_HEADER, cut, write


def check(excinfo: pytest.ExceptionInfo, path: Path, fmt: str, *causes: str) -> FileFormatError:
    """The error is a FileFormatError (a ValueError) naming the path, the format and the cause."""
    err = excinfo.value
    assert type(err) is FileFormatError and isinstance(err, ValueError)
    msg = str(err)
    assert f"'{path}'" in msg and f"as {fmt}:" in msg, msg
    assert err.path == path and err.fmt == fmt and err.cause in msg
    for cause in causes:
        assert cause in msg, msg
    if err.__cause__ is not None:  # a library error: its type is in the message
        assert type(err.__cause__).__name__ in msg, msg
    return err


# ----------------------------------------------------------------------------------- FileFormatError and reading
def test_file_format_error_pickles_and_builds_from_a_message():
    err = bio._error(Path("/x/betas_session01.hdf5"), "NSD betas", "HDF5", OSError("Unable to open file"))
    assert str(err) == "cannot read NSD betas file '/x/betas_session01.hdf5' as HDF5: OSError: Unable to open file"
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.path == err.path and back.fmt == "HDF5" and back.what == "NSD betas"
    assert str(FileFormatError("plain message")) == "plain message"  # how DataLoader workers re-raise


def test_reading_wraps_a_corrupt_hdf5_chunk(tmp_path):
    path = tmp_path / "betas_session01.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=np.arange(40_000, dtype=np.float32), chunks=(4000,), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["betas"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    start = info.byte_offset + info.size // 2
    data[start : start + 64] = GARBAGE[:64]  # same length: the file size and the header stay intact
    path.write_bytes(data)
    with bio.open_hdf5(path, "NSD betas") as f:  # the header is intact: it opens
        np.testing.assert_array_equal(f["betas"][4000:4010], np.arange(4000, 4010))
        with pytest.raises(FileFormatError) as excinfo, bio.reading(path, "HDF5", "NSD betas"):
            f["betas"][:10]
    err = check(excinfo, path, "HDF5", "NSD betas file", "OSError")
    assert isinstance(err.__cause__, OSError)


def test_reading_passes_through_and_reports_missing(tmp_path):
    path = write(tmp_path / "a.bin", b"x")
    with pytest.raises(FileFormatError) as excinfo, bio.reading(path, "HDF5", "NSD betas"):
        raise OSError("Unable to open file (bad object header)")
    check(excinfo, path, "HDF5", "OSError: Unable to open file (bad object header)")
    inner = FileFormatError("from another file")
    with pytest.raises(FileFormatError) as excinfo, bio.reading(path, "HDF5", "x"):
        raise inner
    assert excinfo.value is inner
    with pytest.raises(KeyboardInterrupt), bio.reading(path, "HDF5", "x"):
        raise KeyboardInterrupt
    with pytest.raises(FileNotFoundError, match=r"NSD betas file not found: '.*gone.hdf5' \(expected HDF5\)"):
        with bio.reading(tmp_path / "gone.hdf5", "HDF5", "NSD betas"):
            pass
    empty = write(tmp_path / "empty.hdf5", b"")
    with pytest.raises(FileFormatError, match=r"OSError: bad \(the file is empty"), bio.reading(empty, "HDF5", "x"):
        raise OSError("bad")


OPENERS = [(bio.load_npy, "NumPy .npy"), (bio.load_npz, "NumPy .npz"), (bio.open_hdf5, "HDF5"),
           (bio.load_nifti, "NIfTI"), (bio.load_nifti_array, "NIfTI"), (bio.load_mat, "MATLAB .mat"),
           (bio.load_torch, "PyTorch (torch.save)"), (bio.read_json, "JSON"), (bio.open_image, "an image")]


@pytest.mark.parametrize("opener,fmt", OPENERS)
def test_openers_missing_file_folder_and_empty(tmp_path, opener, fmt):
    path = tmp_path / "nope.bin"
    with pytest.raises(FileNotFoundError) as excinfo:
        opener(path, "stimulus")
    assert str(excinfo.value) == f"stimulus file not found: '{path}' (expected {fmt})"
    with pytest.raises(IsADirectoryError, match="is a folder"):
        opener(tmp_path, "stimulus")
    empty = write(tmp_path / "empty.bin", b"")
    check(pytest.raises(FileFormatError, opener, empty, "stimulus"), empty, fmt, "the file is empty (0 bytes)")
    lfs = write(tmp_path / "lfs.bin", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n")
    check(pytest.raises(FileFormatError, opener, lfs, "stimulus"), lfs, fmt, "Git LFS pointer", "git lfs pull")


# --------------------------------------------------------------------------------------------------------- HDF5
def test_open_hdf5(tmp_path):
    good = tmp_path / "nsd_stimuli.hdf5"
    with h5py.File(good, "w") as f:
        f["imgBrick"] = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    with bio.open_hdf5(good, "NSD stimuli") as f:
        np.testing.assert_array_equal(f["imgBrick"][1], np.arange(48, 96).reshape(4, 4, 3))
    with h5py.File(tmp_path / "ub.hdf5", "w", userblock_size=1024) as f:  # signature at 1024
        f["x"] = np.arange(3)
    with bio.open_hdf5(tmp_path / "ub.hdf5", "x") as f:
        assert f["x"][2] == 2
    truncated = cut(good, tmp_path / "betas_session01.hdf5")
    check(pytest.raises(FileFormatError, bio.open_hdf5, truncated, "NSD betas"), truncated, "HDF5",
          "cannot read NSD betas file", "OSError", "truncated file")
    garbage = write(tmp_path / "garbage.hdf5", GARBAGE)
    check(pytest.raises(FileFormatError, bio.open_hdf5, garbage, "NSD betas"), garbage, "HDF5",
          "not an HDF5 file (no HDF5 signature")
    np.save(tmp_path / "a.npy", np.arange(3))
    npy = (tmp_path / "a.npy").rename(tmp_path / "a.hdf5")
    check(pytest.raises(FileFormatError, bio.open_hdf5, npy, "NSD betas"), npy, "HDF5", "it is a NumPy .npy file")


# -------------------------------------------------------------------------------------------------------- NIfTI
def test_nifti(tmp_path):
    data = np.random.default_rng(0).integers(-1000, 1000, (16, 16, 16), dtype=np.int16)  # compresses badly
    good = tmp_path / "nsdgeneral.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), good)
    assert bio.load_nifti(good, "ROI mask").shape == (16, 16, 16)
    out = bio.load_nifti_array(good, "ROI mask", dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data)
    truncated = cut(good, tmp_path / "betas.nii.gz")
    assert bio.load_nifti(truncated, "NSD betas").shape == (16, 16, 16)  # the header survives the cut...
    check(pytest.raises(FileFormatError, bio.load_nifti_array, truncated, "NSD betas"), truncated, "NIfTI",
          "EOFError")  # ...the data does not
    garbage = write(tmp_path / "garbage.nii.gz", GARBAGE)
    check(pytest.raises(FileFormatError, bio.load_nifti, garbage, "ROI mask"), garbage, "NIfTI",
          "ImageFileError", "not a gzip file")
    raw = write(tmp_path / "garbage.nii", GARBAGE)
    check(pytest.raises(FileFormatError, bio.load_nifti_array, raw, "ROI mask"), raw, "NIfTI", "ImageFileError")


# ---------------------------------------------------------------------------------------------------------- MAT
def test_mat(tmp_path):
    good = tmp_path / "nsd_expdesign.mat"
    scipy.io.savemat(good, {"masterordering": np.arange(1, 11)[None]})
    np.testing.assert_array_equal(bio.load_mat(good, "NSD design")["masterordering"], np.arange(1, 11)[None])
    assert "masterordering" in bio.load_mat(good, "NSD design", variable_names=["masterordering"])
    garbage = write(tmp_path / "garbage.mat", GARBAGE)
    check(pytest.raises(FileFormatError, bio.load_mat, garbage, "NSD design"), garbage, "MATLAB .mat",
          "ValueError")  # scipy's message depends on the first bytes
    v73 = tmp_path / "v73.mat"
    with h5py.File(v73, "w", userblock_size=512) as f:
        f["masterordering"] = np.arange(3)
    with open(v73, "r+b") as handle:
        handle.write(MAT73_HEADER)
    plain = tmp_path / "plain_hdf5.mat"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    for path in (v73, plain):
        check(pytest.raises(FileFormatError, bio.load_mat, path, "NSD design"), path, "MATLAB .mat",
              "MATLAB v7.3", "HDF5", "h5py")
    with bio.open_hdf5(v73, "NSD design") as f:
        np.testing.assert_array_equal(f["masterordering"][:], np.arange(3))
    header_only = write(tmp_path / "header_only.mat", MAT73_HEADER)  # scipy's own NotImplementedError
    err = check(pytest.raises(FileFormatError, bio.load_mat, header_only, "NSD design"), header_only,
                "MATLAB .mat", "MATLAB v7.3", "NotImplementedError")
    assert isinstance(err.__cause__, NotImplementedError)


# ---------------------------------------------------------------------------------------------------- npy / npz
@pytest.mark.parametrize("mmap", [False, True])
def test_npy(tmp_path, mmap):
    arr = np.arange(1000, dtype=np.float64).reshape(10, 100)
    np.save(tmp_path / "brain.npy", arr)
    np.testing.assert_array_equal(bio.load_npy(tmp_path / "brain.npy", "brain data", mmap=mmap), arr)
    truncated = cut(tmp_path / "brain.npy", tmp_path / "truncated.npy")
    check(pytest.raises(FileFormatError, bio.load_npy, truncated, "brain data", mmap=mmap), truncated, "NumPy .npy",
          "truncated: its header says float64 (10, 100) (8000 data bytes)")
    header_cut = cut(tmp_path / "brain.npy", tmp_path / "header_cut.npy", keep=0.005)
    check(pytest.raises(FileFormatError, bio.load_npy, header_cut, "brain data", mmap=mmap), header_cut,
          "NumPy .npy", "ValueError")
    garbage = write(tmp_path / "garbage.npy", GARBAGE)
    check(pytest.raises(FileFormatError, bio.load_npy, garbage, "brain data", mmap=mmap), garbage, "NumPy .npy",
          "not a NumPy .npy file (it does not start with the .npy magic string)")


def test_npy_refuses_npz_and_pickles(tmp_path):
    np.savez(tmp_path / "brain.npz", brain=np.zeros(2), labels=np.ones(2))
    npz = (tmp_path / "brain.npz").rename(tmp_path / "brain.npy")
    check(pytest.raises(FileFormatError, bio.load_npy, npz, "brain data"), npz, "NumPy .npy",
          "NumPy .npz archive (arrays: brain, labels)", "load_npz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    check(pytest.raises(FileFormatError, bio.load_npy, tmp_path / "objects.npy", "brain data"),
          tmp_path / "objects.npy", "NumPy .npy", "ValueError", "allow_pickle=False")


def test_npz(tmp_path):
    path = tmp_path / "features.npz"
    np.savez(path, np.arange(3), np.ones(2), np.zeros(1))
    with bio.load_npz(path, "features", keys=["arr_0", "arr_2"]) as npz:
        np.testing.assert_array_equal(npz["arr_0"], np.arange(3))
    check(pytest.raises(FileFormatError, bio.load_npz, path, "features", keys=["arr_0", "arr_3"]), path,
          "NumPy .npz", "lacks the arrays ['arr_3']", "'arr_0', 'arr_1', 'arr_2'")
    truncated = cut(path, tmp_path / "truncated.npz")
    check(pytest.raises(FileFormatError, bio.load_npz, truncated, "features"), truncated, "NumPy .npz",
          "damaged or truncated zip archive", "BadZipFile")
    np.save(tmp_path / "a.npy", np.arange(3))
    check(pytest.raises(FileFormatError, bio.load_npz, tmp_path / "a.npy", "features"), tmp_path / "a.npy",
          "NumPy .npz", "it is a NumPy .npy file")


# -------------------------------------------------------------------------------------------------------- torch
def test_torch(tmp_path):
    data = {"eeg": torch.arange(2000, dtype=torch.float32).reshape(20, 100), "labels": [1, 2]}
    torch.save(data, tmp_path / "eeg.pth")
    torch.save(data, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name, mmap in (("eeg.pth", False), ("eeg.pth", True), ("legacy.pth", True)):
        out = bio.load_torch(tmp_path / name, "EEG-ImageNet EEG file", mmap=mmap)
        assert torch.equal(out["eeg"], data["eeg"]) and out["labels"] == [1, 2]
    fmt = "PyTorch (torch.save)"
    garbage = write(tmp_path / "garbage.pth", GARBAGE)
    err = check(pytest.raises(FileFormatError, bio.load_torch, garbage, "EEG-ImageNet EEG file"), garbage, fmt,
                "not a PyTorch file")
    assert "file file" not in str(err)
    truncated = cut(tmp_path / "eeg.pth", tmp_path / "truncated.pth")
    check(pytest.raises(FileFormatError, bio.load_torch, truncated, "EEG"), truncated, fmt,
          "damaged or truncated zip archive", "BadZipFile")
    legacy_cut = cut(tmp_path / "legacy.pth", tmp_path / "legacy_cut.pth")
    check(pytest.raises(FileFormatError, bio.load_torch, legacy_cut, "EEG"), legacy_cut, fmt, "RuntimeError",
          "unexpected EOF")
    np.savez(tmp_path / "a.npz", x=np.zeros(2))
    npz = (tmp_path / "a.npz").rename(tmp_path / "a.pth")
    check(pytest.raises(FileFormatError, bio.load_torch, npz, "EEG"), npz, fmt, "NumPy .npz archive (arrays: x)")


def test_torch_weights_only(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"ratio": fractions.Fraction(1, 3)}, path)
    check(pytest.raises(FileFormatError, bio.load_torch, path, "EEG"), path, "PyTorch (torch.save)",
          "weights_only=True) refused it", "fractions.Fraction")
    assert bio.load_torch(path, "EEG", weights_only=False)["ratio"] == fractions.Fraction(1, 3)


# ------------------------------------------------------------------------------------------------- JSON, images
def test_json(tmp_path):
    good = write(tmp_path / "captions.json", json.dumps({"annotations": [{"caption": "a cat"}]}).encode())
    assert bio.read_json(good, "COCO captions") == {"annotations": [{"caption": "a cat"}]}
    bad = write(tmp_path / "bad.json", b'{"a": 1,\n "b": }')
    check(pytest.raises(FileFormatError, bio.read_json, bad, "COCO captions"), bad, "JSON", "JSONDecodeError",
          "line 2 column 7")
    html = write(tmp_path / "page.json", b"<!DOCTYPE html><html><body>Sign in</body></html>")
    check(pytest.raises(FileFormatError, bio.read_json, html, "COCO captions"), html, "JSON", "HTML page")


def test_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "stim.png")
    img = bio.open_image(tmp_path / "stim.png", "stimulus image")
    assert img.mode == "RGB" and img.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(img)[..., 1], pixels)
    truncated = cut(tmp_path / "stim.png", tmp_path / "truncated.png")
    check(pytest.raises(FileFormatError, bio.open_image, truncated, "stimulus image"), truncated, "an image",
          "OSError", "truncated")
    garbage = write(tmp_path / "garbage.png", GARBAGE)
    check(pytest.raises(FileFormatError, bio.open_image, garbage, "stimulus image"), garbage, "an image",
          "UnidentifiedImageError")


def test_import_is_cheap():
    code = ("import sys, brain2img.io; heavy = ('numpy', 'torch', 'h5py', 'nibabel', 'scipy', 'PIL', 'lightning'); "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
