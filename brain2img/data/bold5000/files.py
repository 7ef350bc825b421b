"""Reading and validating the files BOLD5000 (Chang et al., Scientific Data 2019) ships, in the layout MinD-Vis
(github.com/zjc062/mind-vis) and DC-MAE (github.com/soinx0629/vis_dec_neurips) read (paths relative to ``root``,
``n`` = subject 1..4):

- ``BOLD5000_GLMsingle_ROI_betas/py/CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{LH|RH}{ROI}.npy``: the
  GLMsingle single-trial betas of one hemisphere and ROI (:data:`ROIS`), ``(n_trials, n_voxels)``, one row per
  trial in presentation order over all sessions.
- ``BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI{n}/<session folder>/<run>.txt``: one image name per line, one
  folder per session with zero-padded numbers (``CSI1_sess01/``, ...), so that sorted order is session order; a name
  shown again carries the prefix ``rep_``. The trials are the lines of the ``.txt`` files of the session folders
  (other files are skipped), folders and files in sorted (code point) order, with one leading ``rep_`` removed
  (:func:`read_presentation_lists`).
- ``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/img_dict.npy``: a dict image name -> uint8 ``(H, W, 3)``
  array (256 x 256 in the published file), saved with ``np.save``: a pickle (:func:`read_img_dict`).
- ``BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt``: the names of the 113 images shown several
  times (112 four times, one three times): the test images.

Every check fails with an error that names the file and the field (ROI and hemisphere, line, image name).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.io import FileFormatError, load_npy, reading

ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")  #: the reference's ROIs, in its order of concatenation
HEMISPHERES = ("LH", "RH")  #: within a ROI, the left hemisphere's columns come first (sorted file names)
REPEAT_PREFIX = "rep_"
IMG_DICT_FORMAT = "NumPy .npy holding a pickled dict (np.save of {name: uint8 (H, W, 3) array})"
# The only globals an np.save-d dict of plain arrays needs: the array rebuilder (NumPy >= 2 and NumPy 1 names), the
# array type and its dtype. Anything else in the pickle (code, other classes) is refused before it is built.
_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


# --------------------------------------------------------------------------------------------------- paths
def betas_file(root: str | Path, subject: int, hemisphere: str, roi: str) -> Path:
    """The GLMsingle betas of one subject, hemisphere (``"LH"``/``"RH"``) and ROI."""
    return (Path(root) / "BOLD5000_GLMsingle_ROI_betas" / "py"
            / f"CSI{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{hemisphere}{roi}.npy")


def presentation_dir(root: str | Path, subject: int) -> Path:
    """The folder of one subject's session folders of presentation lists."""
    return Path(root) / "BOLD5000_Stimuli" / "Stimuli_Presentation_Lists" / f"CSI{subject}"


def img_dict_file(root: str | Path) -> Path:
    """``img_dict.npy``: image name -> presented image."""
    return Path(root) / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli" / "img_dict.npy"


def repeated_list_file(root: str | Path) -> Path:
    """``repeated_stimuli_113_list.txt``: the test images."""
    return Path(root) / "BOLD5000_Stimuli" / "Scene_Stimuli" / "repeated_stimuli_113_list.txt"


# --------------------------------------------------------------------------------------------------- betas
def betas_what(subject: int, hemisphere: str, roi: str) -> str:
    """How a betas file is named in messages: subject, hemisphere and ROI."""
    return f"BOLD5000 betas (CSI{subject} {hemisphere}{roi})"


def roi_files(root: str | Path, subject: int, rois: list[str]) -> dict[tuple[str, str], Path]:
    """``(roi, hemisphere) -> betas file`` of the chosen ROIs, in the order of concatenation, each checked to exist.

    Raises:
        FileNotFoundError: a file is missing (the ROI and hemisphere are named, and whether the other hemisphere's
            file is there).
    """
    out = {}
    for roi in rois:
        for hemisphere in HEMISPHERES:
            path = betas_file(root, subject, hemisphere, roi)
            if not path.is_file():
                other_hemisphere = HEMISPHERES[hemisphere == "LH"]
                other = betas_file(root, subject, other_hemisphere, roi)
                note = (f"the {other_hemisphere} file '{other.name}' is there: every ROI needs both hemispheres"
                        if other.is_file() else "neither hemisphere's file is there")
                raise FileNotFoundError(f"{betas_what(subject, hemisphere, roi)} file not found: '{path}' (ROI {roi}, "
                                        f"hemisphere {hemisphere}; {note})")
            out[(roi, hemisphere)] = path
    return out


def betas_shape(path: Path, what: str) -> tuple[int, int]:
    """``(n_trials, n_voxels)`` of a betas file from its header (memory-mapped, nothing read).

    Raises:
        FileNotFoundError: the file is missing.
        FileFormatError: not a ``.npy`` file, or truncated.
        ValueError: not a 2-D array of real numbers.
    """
    arr = load_npy(path, what, mmap=True)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} '{path}' holds {arr.dtype} {arr.shape}; expected a 2-D real array (n_trials, "
                         "n_voxels)")
    return int(arr.shape[0]), int(arr.shape[1])


def read_betas(path: Path, what: str) -> np.ndarray:
    """The betas of one file as float64 ``(n_trials, n_voxels)``, every value finite.

    Raises:
        ValueError: NaN or Inf values (the first one's trial and voxel are named).
    """
    betas_shape(path, what)
    x = np.asarray(load_npy(path, what), dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} '{path}' holds {int(bad.sum())} NaN or Inf value(s) (first: trial (row) {row}, "
                         f"voxel (column) {col}); the betas must be finite")
    return x


# --------------------------------------------------------------------------------------------------- name lists
def read_names(path: Path, what: str) -> list[tuple[int, str]]:
    """The non-blank lines of a name list as ``(line number, name)``, each line one name without spaces.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line holding more than one name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: '{path}' (expected a text file, one image name per line)")
    with reading(path, "UTF-8 text", what):
        lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) > 1:
            raise ValueError(f"{what} '{path}' line {number} holds {len(fields)} fields {fields[:3]}; expected one "
                             "image name per line")
        if fields:
            out.append((number, fields[0]))
    return out


@dataclass
class PresentationLists:
    """The trials of one subject, in presentation order.

    Attributes:
        names: image name of each trial (one leading ``rep_`` removed).
        sources: ``(list file, line number)`` of each trial.
        sessions: 1-based position of each trial's session folder in sorted order.
        files: the list files read, in order.
    """

    names: list[str]
    sources: list[tuple[Path, int]]
    sessions: np.ndarray
    files: list[Path]


def read_presentation_lists(folder: Path) -> PresentationLists:
    """Read every ``<folder>/<session folder>/*.txt`` in sorted order (as the reference's ``get_stimuli_list``):
    session folders sorted by name (other entries of ``folder`` are skipped), within each the ``.txt`` files sorted
    by name, lines in file order; a leading ``rep_`` (a repeated showing) is removed once.

    Raises:
        FileNotFoundError: ``folder`` is missing, or holds no ``.txt`` list in any session folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BOLD5000 presentation lists folder not found: '{folder}'")
    names, sources, sessions, files = [], [], [], []
    sub_folders = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    for session, sub in enumerate(sub_folders, start=1):
        for path in sorted((p for p in sub.iterdir() if p.name.endswith(".txt")), key=lambda p: p.name):
            files.append(path)
            for line, name in read_names(path, "BOLD5000 presentation list"):
                names.append(name[len(REPEAT_PREFIX):] if name.startswith(REPEAT_PREFIX) else name)
                sources.append((path, line))
                sessions.append(session)
    if not files:
        raise FileNotFoundError(f"BOLD5000 presentation lists folder '{folder}' holds no '<session folder>/*.txt' "
                                f"list (session folders: {[p.name for p in sub_folders]})")
    return PresentationLists(names, sources, np.asarray(sessions, dtype=np.int64), files)


# --------------------------------------------------------------------------------------------------- images
class _ArrayDictUnpickler(pickle.Unpickler):
    """Unpickles plain NumPy arrays in built-in containers; refuses every other global (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}': only NumPy arrays are allowed") from None


def read_img_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``img_dict.npy``: image name -> uint8 ``(H, W, 3)`` image.

    ``np.save`` of a dict writes a 0-d object array whose data is a pickle of the array. Instead of
    ``np.load(allow_pickle=True)`` (which would run whatever a pickle names), the ``.npy`` header is checked (a
    0-d object array) and the pickle is read by an unpickler that builds nothing but NumPy arrays, dtypes, strings
    and dicts (:data:`_PICKLE_GLOBALS`); a file naming any other global is refused before anything is built.

    Raises:
        FileNotFoundError: the file is missing.
        FileFormatError: not a ``.npy`` file, not a 0-d object array, a pickle naming other objects, or truncated.
        ValueError: not a dict of str -> uint8 ``(H, W, 3)`` arrays (the image name and its dtype/shape are named).
    """
    path = Path(path)
    what = "BOLD5000 image dict"
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: '{path}' (expected {IMG_DICT_FORMAT})")
    with reading(path, IMG_DICT_FORMAT, what), open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise FileFormatError(f"cannot read {what} file '{path}' as {IMG_DICT_FORMAT}: .npy format version "
                                  f"{version} (np.save writes 1.0 or 2.0 for an object array)", path, what,
                                  IMG_DICT_FORMAT)
        shape, _, dtype = read_header(handle)
        if dtype != np.dtype(object) or shape != ():
            raise FileFormatError(f"cannot read {what} file '{path}' as {IMG_DICT_FORMAT}: it holds a {dtype} array "
                                  f"of shape {shape}, not a pickled object (np.save of a dict)", path, what,
                                  IMG_DICT_FORMAT)
        stored = _ArrayDictUnpickler(handle).load()
    content = stored.item() if isinstance(stored, np.ndarray) and stored.shape == () else stored
    if not isinstance(content, dict):
        raise ValueError(f"{what} '{path}' holds a {type(content).__name__}, expected a dict image name -> image")
    for name, image in content.items():
        if not isinstance(name, str):
            raise ValueError(f"{what} '{path}': key {name!r} is a {type(name).__name__}, expected an image name (str)")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"{what} '{path}': image '{name}' is {got}, expected uint8 (H, W, 3)")
    return content
