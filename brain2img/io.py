"""File I/O shared by every cache, checkpoint, generator and file reader: hashing, atomic writes, clear read errors.

:class:`FileFormatError` (a :class:`ValueError`) names the file, what it should be, the format expected and the
cause; :func:`reading` turns any library error into one, and the openers also check magic bytes and say what a file
clearly of another format is (an ``.npz``, a Git LFS pointer, an HTML page...). Nothing half-written ever carries
a final name. Heavy libraries are imported inside the functions that need them, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

MANIFEST_NAME = "manifest.json"
NPY_MAGIC = b"\x93NUMPY"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
GZIP_MAGIC = b"\x1f\x8b"
MAT73 = ("it is a MATLAB v7.3 .mat file (HDF5-based), which scipy.io.loadmat cannot read; read it with h5py "
         "(brain2img.io.open_hdf5)")
_UNIVERSAL = ("empty", "lfs", "html", "badzip")  # what a file found to be is wrong whatever format was expected
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ----------------------------------------------------------------------------------------------------- hashing
def config_hash(config: dict[str, Any]) -> str:
    """Short (16 hex) sha256 of a JSON-serialisable config, independent of key order (non-JSON values via ``str``)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ atomic writes
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (``torch.save(obj, tmp)``, ``np.save(tmp, a)``); it replaces
    ``path`` only if the block succeeds.

    The file ``.<name>.<pid>.<random>.tmp<suffixes>`` is created empty in the same folder (so :func:`os.replace` is
    atomic), with umask permissions (not :func:`tempfile.mkstemp`'s 0600), ending with ``path``'s suffixes so that
    ``np.save``, ``nib.save`` or ``PIL`` write that very file. After the block it is fsynced and renamed; on any
    exception (KeyboardInterrupt included) it is removed and ``path`` is untouched. The folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{''.join(path.suffixes)}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to the temporary file '{tmp}' for '{path}' (it was removed)")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Yield an open temporary sibling of ``path`` (``mode`` ``"wb"`` or ``"w"``, UTF-8 by default), closed and moved
    over ``path`` only if the block succeeds (see :func:`atomic_path`)."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as handle:
        yield handle


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``json.dumps(data, indent=1)`` to ``path`` atomically (see :func:`atomic_path`)."""
    write_text_atomic(path, json.dumps(data, indent=1))


@contextmanager
def staging_folder(final: str | os.PathLike, marker: str = MANIFEST_NAME) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder ``.<name>.tmp-<pid>`` of ``final``; publish it as ``final`` on success.

    A stale temporary folder of that name is removed first. On success the folder must hold ``marker`` (written
    last: it makes a folder complete) and is renamed to ``final``; if another process published a complete ``final``
    meanwhile, that one is kept and ours dropped. On any exception (KeyboardInterrupt included) the temporary folder
    is removed and the exception re-raised.

    Raises:
        RuntimeError: the block finished without writing ``marker``.
        FileExistsError: ``final`` exists but is incomplete (no ``marker``).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if not (tmp / marker).is_file():
            raise RuntimeError(f"the staging folder '{tmp}' for '{final}' was finished without its '{marker}' "
                               "(written last, it marks the folder complete); nothing was published")
        try:
            os.replace(tmp, final)
        except OSError as err:
            if not (final / marker).is_file():
                raise FileExistsError(f"cannot publish '{final}': it already exists but is incomplete (no "
                                      f"'{marker}'); delete it and run again ({err})") from err
            shutil.rmtree(tmp, ignore_errors=True)  # another process published a complete folder first: keep it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------- errors and sniffing
class FileFormatError(ValueError):
    """A file that exists but cannot be read as the expected format; ``path``, ``what``, ``fmt`` and ``cause`` are
    in the message and attributes. Built from a message alone (as DataLoader workers re-raise), they are ``None``."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, what: str | None = None,
                 fmt: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.what, self.fmt, self.cause = what, fmt, cause


def _thing(what: str) -> str:
    return what if what.endswith("file") else f"{what} file"


def _cause(err: BaseException) -> str:
    """``"Type: message"`` with the message on one line."""
    msg = " ".join(_ANSI.sub("", str(err)).split())
    if not msg and isinstance(err, EOFError):
        msg = "the file ends early (truncated?)"
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _error(path: Path, what: str, fmt: str, cause: str | BaseException) -> FileFormatError:
    text = _cause(cause) if isinstance(cause, BaseException) else cause
    return FileFormatError(f"cannot read {_thing(what)} '{path}' as {fmt}: {text}", path, what, fmt, text)


def _check_file(path: str | os.PathLike, what: str, fmt: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{_thing(what)} not found: '{path}' (expected {fmt})")
    if path.is_dir():
        raise IsADirectoryError(f"{_thing(what)} '{path}' is a folder, not a file (expected {fmt})")
    return path


def _hdf5_offset(path: Path) -> int | None:
    """Where the HDF5 signature is (0, or 512, 1024, 2048... after a user block), or ``None``."""
    size, offset = path.stat().st_size, 0
    with open(path, "rb") as handle:
        while offset + 8 <= size:
            handle.seek(offset)
            if handle.read(8) == HDF5_MAGIC:
                return offset
            offset = max(512, 2 * offset)
    return None


def _zip_kind(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return "badzip", f"it is a damaged or truncated zip archive ({_cause(err)})"
    if all(name.endswith(".npy") for name in names):
        arrays = ", ".join(name[:-4] for name in names) or "none"
        return "npz", f"it is a NumPy .npz archive (arrays: {arrays}); read it with brain2img.io.load_npz"
    if any(name.endswith("data.pkl") for name in names):
        return "torch", "it is a PyTorch zip file (torch.save)"
    return "zip", f"it is a zip archive holding {names[:5]}{'...' if len(names) > 5 else ''}"


def _sniff(path: Path) -> tuple[str, str] | None:
    """``(kind, "it is ...")`` for a file whose format its first bytes give away, else ``None``."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "empty", "the file is empty (0 bytes)"
    if head.startswith(b"version https://git-lfs"):
        return "lfs", "it is a Git LFS pointer, not the data (fetch the data with `git lfs pull`)"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html", "it is an HTML page, not the data (a failed or redirected download?)"
    if head.startswith(NPY_MAGIC):
        return "npy", "it is a NumPy .npy file"
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "mat", "it is a MATLAB v5/v7 .mat file"
    if head.startswith(GZIP_MAGIC):
        return "gzip", "it is gzip-compressed data"
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
        return "image", f"it is a {'PNG' if head[0] == 0x89 else 'JPEG'} image"
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return "nifti", "it is an uncompressed NIfTI-1 image"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle", "it is a Python pickle (a legacy torch.save file?)"
    if _hdf5_offset(path) is not None:
        return "hdf5", MAT73 if head.startswith(b"MATLAB 7.3") else "it is an HDF5 file"
    return None


def _checked(path: str | os.PathLike, what: str, fmt: str, kinds: set[str | None], lacks: str
             ) -> tuple[Path, tuple[str, str] | None]:
    """Check that ``path`` is a file whose sniffed kind is in ``kinds`` (``None``: not identified); else raise."""
    path = _check_file(path, what, fmt)
    found = _sniff(path)
    if found is not None and found[0] in _UNIVERSAL:
        raise _error(path, what, fmt, found[1])
    if (found[0] if found else None) not in kinds:
        raise _error(path, what, fmt, lacks + (f"; {found[1]}" if found else ""))
    return path, found


@contextmanager
def reading(path: str | os.PathLike, fmt: str, what: str) -> Iterator[Path]:
    """Turn any exception raised inside the block into a :class:`FileFormatError` naming ``path``, ``what`` (e.g.
    ``"NSD betas"``) and ``fmt`` (e.g. ``"HDF5"``), chained to it; yields ``path`` as a :class:`~pathlib.Path`.

    Wrap the lines that touch the file's contents (opening it, reading an HDF5 dataset lazily); keep your own checks
    of the values outside, or they are reported as format errors too. A :class:`FileFormatError`, ``MemoryError`` and
    non-``Exception`` exceptions (KeyboardInterrupt) pass through unchanged; a missing file (on entry, or gone when
    the library fails) is a ``FileNotFoundError``.
    """
    path = _check_file(path, what, fmt)
    try:
        yield path
    except (FileFormatError, MemoryError):
        raise
    except Exception as err:
        if not path.exists():
            raise FileNotFoundError(f"{_thing(what)} not found: '{path}' (expected {fmt})") from err
        cause = _cause(err)
        try:
            found = _sniff(path)
        except OSError:
            found = None
        if found is not None and found[0] in _UNIVERSAL:
            cause = f"{cause} ({found[1]})"
        raise _error(path, what, fmt, cause) from err


# ------------------------------------------------------------------------------------------------------ openers
def load_npy(path: str | os.PathLike, what: str, mmap: bool = False) -> Any:
    """Load a ``.npy`` array (no pickles; memory-mapped read-only if ``mmap``); ``what`` names it in messages (e.g.
    ``"brain data"``). A truncated file is caught from its header, also when memory-mapping."""
    import numpy as np

    fmt = "NumPy .npy"
    path, _ = _checked(path, what, fmt, {"npy"}, "not a NumPy .npy file (it does not start with the .npy magic string)")
    with reading(path, fmt, what):
        with open(path, "rb") as handle:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(handle))
            if read_header is not None:
                shape, _, dtype = read_header(handle)
                need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                have = path.stat().st_size - handle.tell()
                if not dtype.hasobject and have < need:
                    raise _error(path, what, fmt, f"truncated: its header says {dtype} {tuple(shape)} ({need} data "
                                                  f"bytes) but it holds {have} data bytes")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_npz(path: str | os.PathLike, what: str, keys: Sequence[str] | None = None) -> Any:
    """Open an ``.npz`` archive (no pickles) holding the arrays ``keys``: a lazy ``NpzFile`` (a context manager);
    an array is read when accessed, so wrap those reads in :func:`reading`."""
    import numpy as np

    fmt = "NumPy .npz"
    path, _ = _checked(path, what, fmt, {"npz"}, "not a NumPy .npz archive (not a zip archive of .npy files)")
    with reading(path, fmt, what):
        npz = np.load(path, allow_pickle=False)
    missing = [key for key in keys or () if key not in npz.files]
    if missing:
        npz.close()
        raise _error(path, what, fmt, f"it lacks the arrays {missing} (it holds {npz.files})")
    return npz


def open_hdf5(path: str | os.PathLike, what: str) -> Any:
    """Open an HDF5 file (or a MATLAB v7.3 .mat) read-only: an ``h5py.File``, a context manager. Datasets are read
    lazily: wrap those reads in :func:`reading`."""
    import h5py

    fmt = "HDF5"
    path, _ = _checked(path, what, fmt, {"hdf5"}, "not an HDF5 file (no HDF5 signature at offset 0, 512, 1024, ...)")
    with reading(path, fmt, what):
        return h5py.File(path, "r")


def load_nifti(path: str | os.PathLike, what: str, **load_kwargs: Any) -> Any:
    """``nibabel.load`` a NIfTI image (``.nii``, ``.nii.gz``): the header is read, the data on access (see
    :func:`load_nifti_array`)."""
    import nibabel as nib

    fmt = "NIfTI"
    path, _ = _checked(path, what, fmt, {None, "gzip", "nifti"}, "not a NIfTI image")
    with reading(path, fmt, what):
        return nib.load(path, **load_kwargs)


def load_nifti_array(path: str | os.PathLike, what: str, dtype: Any = None) -> Any:
    """Load a NIfTI image's data (``np.asarray(img.dataobj)``, scaled, as ``dtype`` if given).

    A truncated or corrupt ``.nii.gz`` shows only here (``EOFError``, ``zlib.error``, ``OSError``...): all are
    reported as :class:`FileFormatError`.
    """
    import numpy as np

    img = load_nifti(path, what)
    with reading(path, "NIfTI", what):
        return np.asarray(img.dataobj, dtype=dtype)


def load_mat(path: str | os.PathLike, what: str, **loadmat_kwargs: Any) -> dict[str, Any]:
    """Load a MATLAB v4 to v7 ``.mat`` file with ``scipy.io.loadmat`` (v7.3 files are HDF5: see :func:`open_hdf5`)."""
    import scipy.io

    fmt = "MATLAB .mat"
    path, found = _checked(path, what, fmt, {None, "mat", "hdf5"}, "not a MATLAB .mat file")
    if found is not None and found[0] == "hdf5":
        raise _error(path, what, fmt, MAT73)
    with reading(path, fmt, what):
        try:
            return scipy.io.loadmat(path, **loadmat_kwargs)
        except NotImplementedError as err:  # scipy's answer to a v7.3 file
            raise _error(path, what, fmt, f"{MAT73} ({_cause(err)})") from err


def load_torch(path: str | os.PathLike, what: str, weights_only: bool = True, map_location: Any = "cpu",
               mmap: bool = False) -> Any:
    """``torch.load`` a ``torch.save`` file (zip format of torch >= 1.6, or a legacy pickle); ``weights_only``
    refuses anything but tensors and plain containers; ``mmap`` memory-maps the tensors (zip format only)."""
    import torch

    fmt = "PyTorch (torch.save)"
    path, found = _checked(path, what, fmt, {"torch", "pickle"},
                           "not a PyTorch file (neither a torch >= 1.6 zip archive nor a legacy pickle)")
    with reading(path, fmt, what):
        try:
            return torch.load(path, map_location=map_location, weights_only=weights_only,
                              mmap=bool(mmap and found is not None and found[0] == "torch"))
        except pickle.UnpicklingError as err:
            if not weights_only:
                raise
            match = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", str(err), re.S)
            detail = " ".join((match.group(1) if match else str(err)).split())
            raise _error(path, what, fmt, f"UnpicklingError: torch.load(weights_only=True) refused it: {detail} (it "
                                          "holds objects other than tensors and plain containers, or is truncated)"
                         ) from err


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a UTF-8 JSON file (a syntax error is reported with its line and column)."""
    fmt = "JSON"
    path, _ = _checked(path, what, fmt, {None}, "not JSON text")
    with reading(path, fmt, what):
        return json.loads(path.read_text(encoding="utf-8"))


def open_image(path: str | os.PathLike, what: str) -> Any:
    """Open an image with PIL, fully decoded (a truncated file fails here, not later), as an RGB image (file closed).
    """
    from PIL import Image

    fmt = "an image"
    path, _ = _checked(path, what, fmt, {None, "image"}, "not an image")
    with reading(path, fmt, what), Image.open(path) as img:
        return img.convert("RGB")
