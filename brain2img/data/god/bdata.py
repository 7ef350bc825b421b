"""The Kamitani lab's own release of GOD (``layout="bdata"``): ``Subject{1..5}.h5`` BData files and stimulus JPEGs.

BData (github.com/KamitaniLab/bdpy ``bdpy/bdata/bdata.py``; the GOD files on figshare, article 7387130, read by
github.com/KamitaniLab/GenericObjectDecoding ``code/python/analysis_FeaturePrediction.py``) is one HDF5 file:

- ``dataset`` float ``(n_samples, n_columns)``: one row per sample (a stimulus block), the voxels and the per-sample
  fields side by side in the columns;
- ``metadata/key`` (byte strings), ``metadata/description`` and ``metadata/value`` float ``(n_keys, n_columns)``:
  a key marks the columns it describes with 1 (NaN or 0 elsewhere). ``VoxelData`` marks the voxels, ``ROI_VC``,
  ``ROI_V1``, ... ``ROI_HVC`` the voxels of each ROI (``dat.select('ROI_VC = 1')``), and ``DataType`` (1 training
  perception, 2 test perception, 3 imagery), ``Run``, ``Block`` and ``stimulus_id`` (``Label`` in the older files
  the MATLAB demo reads) one column each (``dat.select('DataType')``).

It is read here with h5py exactly as ``bdpy.BData`` reads it (``metaData`` / ``dataSet`` are accepted too), so bdpy
(which supports Python < 3.12 only) is not a dependency; the tests write BData files with bdpy itself and check this
reader against ``BData.select``. Only the HDF5 form is read, not BrainDecoderToolbox2 ``.mat`` files.

Stimulus images are not shipped (ImageNet licence; the lab shares them on request): ``image_root`` holds them as
the lab's ``get_stimulusimages.m`` writes them, ``<image_root>/<training|test>/<synset>/<name>``, or flat in
``<image_root>/<training|test>/``, ``<image_root>/`` or ImageNet's ``<image_root>/<synset>/``, with
``<name> = n<synset, 8 digits>_<image>.JPEG``. A missing image is an error naming the places looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brain2img.data.god.prep import first_nonfinite, float_label, image_name
from brain2img.io import open_hdf5, reading

WHAT = "GOD BData file"
DATA_TYPES = {1: "training perception", 2: "test perception", 3: "imagery"}
STIMULUS_KEYS = ("stimulus_id", "Label")
READ_CHUNK = 256  # samples read at a time


def bdata_file(root: str | Path, subject: int) -> Path:
    """``<root>/Subject<subject>.h5``."""
    return Path(root) / f"Subject{subject}.h5"


def roi_key(roi: str) -> str:
    """The metadata key of a ROI: ``VC`` -> ``ROI_VC`` (a name already starting with ``ROI_`` is kept)."""
    return roi if roi.startswith("ROI_") else f"ROI_{roi}"


@dataclass
class BDataHeader:
    """The metadata of a BData file and the shape of its dataset.

    Attributes:
        path: the file.
        keys: metadata keys, in file order.
        value: float64 ``(n_keys, n_columns)`` metadata values.
        n_samples: rows of the dataset.
        dataset: name of the dataset (``dataset`` or ``dataSet``).
    """

    path: Path
    keys: list[str]
    value: np.ndarray
    n_samples: int
    dataset: str

    def columns(self, key: str, what: str) -> np.ndarray:
        """bool ``(n_columns,)``: the columns marked 1 by metadata ``key`` (``what`` it is, for messages).

        Raises:
            ValueError: no such key, or none of its columns is marked.
        """
        if key not in self.keys:
            similar = [k for k in self.keys if k.startswith("ROI_")] if key.startswith("ROI_") else self.keys
            raise ValueError(f"{WHAT} '{self.path}' has no metadata '{key}' ({what}); its "
                             f"{'ROI ' if key.startswith('ROI_') else ''}metadata keys: {similar}")
        cols = self.value[self.keys.index(key)] == 1
        if not cols.any():
            raise ValueError(f"{WHAT} '{self.path}': metadata '{key}' ({what}) marks no column with 1")
        return cols


def read_header(path: str | Path) -> BDataHeader:
    """Read the metadata of a BData HDF5 file and check its shape against the dataset's."""
    path = Path(path)
    with open_hdf5(path, WHAT) as f:
        meta = next((g for g in ("metadata", "metaData") if g in f), None)
        data = next((d for d in ("dataset", "dataSet") if d in f), None)
        if meta is None or data is None or "key" not in f[meta] or "value" not in f[meta]:
            raise ValueError(f"{WHAT} '{path}' is not a BData file: it needs a dataset 'dataset' and a group "
                             f"'metadata' with 'key' and 'value' (it holds {list(f)})")
        with reading(path, "HDF5", WHAT):
            raw = f[meta]["key"][()]
            value = np.asarray(f[meta]["value"][()], dtype=np.float64)
            shape = tuple(f[data].shape)
    keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in np.asarray(raw).reshape(-1).tolist()]
    if len(shape) != 2 or value.shape != (len(keys), shape[-1]):
        raise ValueError(f"{WHAT} '{path}': 'metadata/value' is {value.shape} and '{data}' {shape}; expected "
                         f"(n_keys = {len(keys)}, n_columns) and (n_samples, n_columns)")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"{WHAT} '{path}': metadata keys {dup} appear more than once")
    return BDataHeader(path, keys, value, int(shape[0]), data)


def read_field(header: BDataHeader, key: str, what: str) -> np.ndarray:
    """A per-sample field (one column, e.g. ``DataType``) as float64 ``(n_samples,)``."""
    cols = np.flatnonzero(header.columns(key, what))
    if len(cols) != 1:
        raise ValueError(f"{WHAT} '{header.path}': metadata '{key}' ({what}) marks {len(cols)} columns, expected "
                         "one (a per-sample field)")
    with open_hdf5(header.path, WHAT) as f, reading(header.path, "HDF5", WHAT):
        return np.asarray(f[header.dataset][:, int(cols[0])], dtype=np.float64)


def read_data_types(header: BDataHeader) -> np.ndarray:
    """``DataType`` of every sample as int64, each one of :data:`DATA_TYPES`."""
    dt = read_field(header, "DataType", "1 = training perception, 2 = test perception, 3 = imagery")
    bad = np.flatnonzero(~np.isin(dt, list(DATA_TYPES)))
    if len(bad):
        raise ValueError(f"{WHAT} '{header.path}': field 'DataType' of sample {int(bad[0])} is {dt[bad[0]]!r}; "
                         f"expected one of {DATA_TYPES}")
    return dt.astype(np.int64)


def stimulus_key(header: BDataHeader, key: str | None) -> str:
    """The metadata key of the stimulus ids: ``key`` if given, else the first of :data:`STIMULUS_KEYS` present."""
    if key is not None:
        return key
    found = [k for k in STIMULUS_KEYS if k in header.keys]
    if not found:
        raise ValueError(f"{WHAT} '{header.path}' has no stimulus id metadata: none of {STIMULUS_KEYS} is among its "
                         f"keys {header.keys} (set stimulus_key)")
    return found[0]


def read_voxels(header: BDataHeader, rows: np.ndarray, cols: np.ndarray, roi: str, data_types: np.ndarray
                ) -> np.ndarray:
    """float64 ``(len(rows), n_selected)``: the samples ``rows`` (increasing) of the columns ``cols`` (bool), read
    ``READ_CHUNK`` samples at a time; NaN or Inf is an error naming the sample and its ``DataType``."""
    rows = np.asarray(rows, dtype=np.int64)
    idx = np.flatnonzero(cols)
    out = np.empty((len(rows), len(idx)), dtype=np.float64)
    with open_hdf5(header.path, WHAT) as f:
        ds = f[header.dataset]
        for start in range(0, len(rows), READ_CHUNK):
            part = rows[start : start + READ_CHUNK]
            with reading(header.path, "HDF5", WHAT):
                block = np.asarray(ds[int(part[0]) : int(part[-1]) + 1], dtype=np.float64)
            out[start : start + len(part)] = block[part - part[0]][:, idx]
    found = first_nonfinite(out)
    if found is not None:
        i, j, count = found
        raise ValueError(f"{WHAT} '{header.path}': the voxel data of sample {int(rows[i])} (DataType "
                         f"{int(data_types[rows[i]])}) is NaN or Inf at column {j} of ROI '{roi}' ({count} value(s)); "
                         "they are not dropped silently: choose another ROI or fix the file")
    return out


def image_candidates(root: str | Path, sid: int, kind: str) -> list[Path]:
    """Where the image of stimulus ``sid`` is looked for (``kind``: ``training`` or ``test``), in order."""
    root, name = Path(root), image_name(sid)
    synset = name.split("_")[0]
    return [root / kind / synset / name, root / kind / name, root / name, root / synset / name]


def find_image(root: str | Path, sid: int, kind: str) -> Path:
    """The first existing :func:`image_candidates` path.

    Raises:
        FileNotFoundError: none exists (the message names the image, its GOD id and the places looked at).
    """
    candidates = image_candidates(root, sid, kind)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"GOD {kind} stimulus image {image_name(sid)} (stimulus id {float_label(sid)}) not found "
                            f"under image_root '{root}': looked for {[str(p) for p in candidates]}")
