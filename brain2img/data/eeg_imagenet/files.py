"""Reading and validating the files the EEG-ImageNet publishers ship (Spampinato et al., CVPR 2017).

- ``eeg_5_95_std.pth`` (or ``eeg_14_70_std.pth``, ``eeg_55_95_std.pth``): a ``torch.save``-d dict with
  ``'dataset'``: a list of records ``{'eeg': Tensor(128, L), 'image': int, 'label': int, 'subject': int}``,
  ``'labels'``: 40 ImageNet synset ids (``'n02389026'``, indexed by a record's ``'label'``) and
  ``'images'``: image names ``'<synset>_<number>'`` (indexed by a record's ``'image'``).
- ``block_splits_by_image_{all,single}.pth``: ``{'splits': [{'train': [...], 'val': [...], 'test': [...]}, ...]}``,
  indices into the record list ("all") or into the subject-filtered record list ("single").
- ``<image_root>/<synset>/<name>.JPEG``: the stimuli.

Both ``.pth`` files hold only dicts, lists, strings, ints and tensors, so they are read with
``torch.load(weights_only=True)`` (no arbitrary pickled code runs; the legacy and the zip format both work).
Every check fails with an error that names the file and the key or record at fault.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from brain2img.data.splits import SPLITS
from brain2img.io import load_torch, open_image, sha256_file

RECORD_FIELDS = ("eeg", "image", "label", "subject")
TOP_KEYS = ("dataset", "labels", "images")


@dataclass
class EEGRecords:
    """The validated content of an EEG ``.pth`` file.

    Attributes:
        path: the file.
        eeg: per record, the stored ``(n_channels, L)`` signal (a tensor or array, not copied).
        lengths: int64 ``(n_records,)``, ``L`` of each record.
        image: int64 ``(n_records,)``, index into ``image_names``.
        label: int64 ``(n_records,)``, index into ``label_names``.
        subject: int64 ``(n_records,)``, subject number as stored (1..6 in the published file).
        image_names: ``'<synset>_<number>'`` per image.
        label_names: synset id per class.
    """

    path: Path
    eeg: list[Any]
    lengths: np.ndarray
    image: np.ndarray
    label: np.ndarray
    subject: np.ndarray
    image_names: list[str]
    label_names: list[str]


def load_torch_file(path: str | Path, what: str) -> Any:
    """``torch.load`` a file with ``weights_only=True`` onto the CPU (memory-mapped for the zip format).

    Args:
        path: the file.
        what: what the file should hold, for messages (e.g. ``"EEG-ImageNet EEG file"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a torch file or holds types other than plain containers and tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: '{path}'")
    return load_torch(path, what, weights_only=True, mmap=True)


def as_index(value: Any) -> int | None:
    """An integer (Python, NumPy or 0-d integer tensor) as ``int``; ``None`` for anything else (bools too)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if torch.is_tensor(value) and value.ndim == 0 and not value.is_floating_point() and value.dtype != torch.bool:
        return int(value.item())
    return None


def _string_list(data: dict[str, Any], key: str, path: Path) -> list[str]:
    values = data[key]
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values) or not values:
        raise ValueError(f"EEG file '{path}': key '{key}' must be a non-empty list of strings, got "
                         f"{type(values).__name__}")
    return list(values)


def _record_index(value: Any, i: int, field: str, n: int, path: Path) -> int:
    index = as_index(value)
    if index is None:
        raise ValueError(f"EEG file '{path}': record {i} field '{field}' must be an integer, got "
                         f"{type(value).__name__}")
    if n and not 0 <= index < n:
        key = "images" if field == "image" else "labels"
        raise ValueError(f"EEG file '{path}': record {i} field '{field}' = {index} is out of range: '{key}' has {n} "
                         f"entries")
    return index


def _real_dtype(x: torch.Tensor | np.ndarray) -> bool:
    if torch.is_tensor(x):
        return x.dtype != torch.bool and not x.is_complex()
    return bool(np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer))


def read_eeg_file(path: str | Path, n_channels: int = 128) -> EEGRecords:
    """Read and validate the structure of an EEG-ImageNet ``.pth`` file (values are checked later, per use).

    Args:
        path: the ``eeg_*_std.pth`` file.
        n_channels: expected number of EEG channels (rows of every ``'eeg'``).

    Returns:
        The records (signals not copied).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a missing key or field, an ``'eeg'`` that is not 2-D with ``n_channels`` rows, or an index out
            of range.
    """
    path = Path(path)
    data = load_torch_file(path, "EEG-ImageNet EEG file")
    if not isinstance(data, dict):
        raise ValueError(f"EEG file '{path}' holds a {type(data).__name__}: expected a dict with keys {TOP_KEYS}")
    missing = [k for k in TOP_KEYS if k not in data]
    if missing:
        raise ValueError(f"EEG file '{path}' lacks the key(s) {missing}: expected a dict with keys {TOP_KEYS}")
    labels, images = _string_list(data, "labels", path), _string_list(data, "images", path)
    records = data["dataset"]
    if not isinstance(records, list | tuple) or not records:
        raise ValueError(f"EEG file '{path}': key 'dataset' must be a non-empty list of records, got "
                         f"{type(records).__name__}")
    n = len(records)
    eeg: list[Any] = []
    ints = np.empty((4, n), dtype=np.int64)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"EEG file '{path}': record {i} of 'dataset' is a {type(rec).__name__}, expected a dict "
                             f"with fields {RECORD_FIELDS}")
        lacking = [f for f in RECORD_FIELDS if f not in rec]
        if lacking:
            raise ValueError(f"EEG file '{path}': record {i} of 'dataset' lacks the field(s) {lacking}")
        x = rec["eeg"]
        if not (torch.is_tensor(x) or isinstance(x, np.ndarray)):
            raise ValueError(f"EEG file '{path}': record {i} field 'eeg' is a {type(x).__name__}, expected a tensor")
        if x.ndim != 2 or x.shape[0] != n_channels:
            raise ValueError(f"EEG file '{path}': record {i} field 'eeg' has shape {tuple(x.shape)}, expected "
                             f"({n_channels}, L) (channels x time samples)")
        if not _real_dtype(x):
            raise ValueError(f"EEG file '{path}': record {i} field 'eeg' has dtype {x.dtype}, expected real numbers")
        eeg.append(x)
        ints[0, i] = x.shape[1]
        ints[1, i] = _record_index(rec["image"], i, "image", len(images), path)
        ints[2, i] = _record_index(rec["label"], i, "label", len(labels), path)
        ints[3, i] = _record_index(rec["subject"], i, "subject", 0, path)
    return EEGRecords(path=path, eeg=eeg, lengths=ints[0], image=ints[1], label=ints[2], subject=ints[3],
                      image_names=images, label_names=labels)


def read_split_file(path: str | Path, split_index: int, n_indexed: int, indexed: str) -> dict[str, np.ndarray]:
    """Read split ``split_index`` of a ``block_splits_by_image_*.pth`` file and check its indices.

    Args:
        path: the split file.
        split_index: which entry of ``'splits'``.
        n_indexed: length of the list the indices point into.
        indexed: what that list is, for messages (e.g. ``"the records of subject 4"``).

    Returns:
        ``"train"``, ``"val"``, ``"test"`` -> int64 indices as stored (order kept).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a missing key, ``split_index`` out of range, a non-integer or out-of-range index, an index
            repeated within a split or shared by two splits.
    """
    path = Path(path)
    data = load_torch_file(path, "EEG-ImageNet split file")
    if not isinstance(data, dict) or "splits" not in data:
        raise ValueError(f"split file '{path}' lacks the key 'splits': expected {{'splits': [{{'train': [...], "
                         f"'val': [...], 'test': [...]}}, ...]}}")
    entries = data["splits"]
    if not isinstance(entries, list | tuple):
        raise ValueError(f"split file '{path}': key 'splits' must be a list, got {type(entries).__name__}")
    if not 0 <= split_index < len(entries):
        raise ValueError(f"split file '{path}': split_index {split_index} is out of range, the file has "
                         f"{len(entries)} split(s) in 'splits'")
    entry = entries[split_index]
    missing = [k for k in SPLITS if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise ValueError(f"split file '{path}': 'splits'[{split_index}] lacks the key(s) {missing}")
    out: dict[str, np.ndarray] = {}
    for key in SPLITS:
        values = entry[key]
        values = values.tolist() if torch.is_tensor(values) or isinstance(values, np.ndarray) else values
        if not isinstance(values, list | tuple):
            raise ValueError(f"split file '{path}': 'splits'[{split_index}]['{key}'] must be a list of indices, got "
                             f"{type(values).__name__}")
        idx = [as_index(v) for v in values]
        bad = [v for v, i in zip(values, idx, strict=True) if i is None or not 0 <= i < n_indexed]
        if bad:
            raise ValueError(f"split file '{path}': 'splits'[{split_index}]['{key}'] holds {len(bad)} index(es) that "
                             f"are not in [0, {n_indexed}) (first: {bad[0]!r}); the indices point into {indexed} "
                             f"({n_indexed} records)")
        arr = np.asarray(idx, dtype=np.int64)
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"split file '{path}': 'splits'[{split_index}]['{key}'] repeats index "
                             f"{int(uniq[counts > 1][0])}")
        out[key] = arr
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(out[a], out[b])
        if len(shared):
            raise ValueError(f"split file '{path}': 'splits'[{split_index}] has {len(shared)} index(es) in both "
                             f"'{a}' and '{b}' (first: {int(shared[0])})")
    return out


def image_file(root: str | Path, name: str) -> Path:
    """Path of stimulus ``name`` (``'<synset>_<number>'``): ``<root>/<synset>/<name>.JPEG``."""
    return Path(root) / name.split("_")[0] / f"{name}.JPEG"


def load_stimulus_image(path: str | Path, size: int) -> np.ndarray:
    """Read an image as RGB, centre-crop it to a square (side = shorter side; odd leftovers go right / bottom) and
    resize that square to ``size`` x ``size`` with PIL bicubic resampling.

    Greyscale and CMYK JPEGs (a few ImageNet files are) are converted to RGB by PIL, as the reference loader does.

    Returns:
        uint8 ``(size, size, 3)``.

    Raises:
        FileNotFoundError: the file does not exist (never replaced by noise).
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stimulus image not found: '{path}' (expected <image_root>/<synset>/<name>.JPEG)")
    rgb = open_image(path, "stimulus image")
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def files_digest(paths: list[Path]) -> str:
    """One sha256 over ``'<name>:<sha256 of the file>'`` lines of several files, in the given order."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(f"{p.name}:{sha256_file(p)}\n".encode())
    return digest.hexdigest()
