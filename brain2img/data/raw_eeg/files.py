"""Raw EEG recordings on disk: resolving paths and patterns, checksums, reading through MNE, picking channels.

Formats: EDF, BDF, FIF (``.fif``, ``.fif.gz``) and BrainVision (``.vhdr`` with its ``.eeg``/``.vmrk``), all read by
``mne.io.read_raw``. Every failure names the recording (and, for list files, the line).
"""

from __future__ import annotations

import glob
import hashlib
import re
from fractions import Fraction
from pathlib import Path

import mne

from brain2img.io import reading, sha256_file

SUPPORTED_EXTENSIONS = (".edf", ".bdf", ".fif", ".fif.gz", ".vhdr")
LIST_EXTENSION = ".txt"


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def _expand(entry: str, origin: str) -> list[Path]:
    """One path or glob pattern -> existing files, with errors naming the entry."""
    if glob.has_magic(entry) and not Path(entry).is_file():  # a real file whose name has '[' is not a pattern
        found = [Path(p) for p in glob.glob(entry, recursive=True) if Path(p).is_file()]
        if not found:
            raise FileNotFoundError(f"the pattern '{entry}'{origin} matches no file")
        return found
    path = Path(entry)
    if path.is_dir():
        raise ValueError(f"'{entry}'{origin} is a folder; give files or a pattern such as '{path / '**' / '*.edf'}'")
    if not path.is_file():
        raise FileNotFoundError(f"EEG recording not found: '{entry}'{origin}")
    return [path]


def resolve_files(files: list[str] | str) -> list[Path]:
    """Resolve recording paths, glob patterns (``**`` recursive) or one ``.txt`` file listing them, one a line.

    In a list file, blank lines and lines starting with ``#`` are ignored and relative paths are relative to the list
    file's folder. The result is sorted, absolute and without duplicates.

    Raises:
        FileNotFoundError: a missing file, list file, or a pattern that matches nothing (named).
        ValueError: no entry, a folder, or a file whose extension is not one of :data:`SUPPORTED_EXTENSIONS`.
    """
    entries: list[tuple[str, str]] = []
    items = [files] if isinstance(files, (str, Path)) else list(files)
    for item in items:
        item = str(item)
        if item.lower().endswith(LIST_EXTENSION):
            listing = Path(item)
            if not listing.is_file():
                raise FileNotFoundError(f"file list not found: '{item}'")
            for number, line in enumerate(listing.read_text().splitlines(), 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    full = line if Path(line).is_absolute() else str(listing.parent / line)
                    entries.append((full, f" (line {number} of '{item}')"))
        else:
            entries.append((item, ""))
    if not entries:
        raise ValueError(f"`files` names no EEG recording (got {files!r})")
    resolved: set[Path] = set()
    for entry, origin in entries:
        for path in _expand(entry, origin):
            if _extension(path) not in SUPPORTED_EXTENSIONS:
                raise ValueError(f"unsupported EEG file '{path}'{origin}: extension '{_extension(path)}', expected one "
                                 f"of {SUPPORTED_EXTENSIONS}")
            resolved.add(path.resolve())
    return sorted(resolved)


def recording_checksum(path: str | Path) -> str:
    """sha256 of a recording; for BrainVision, of the header together with the data and marker files it names."""
    path = Path(path)
    if _extension(path) != ".vhdr":
        return sha256_file(path)
    text = path.read_text(errors="replace")
    digest = hashlib.sha256(sha256_file(path).encode())
    for key in ("DataFile", "MarkerFile"):
        match = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if match:
            companion = path.parent / match.group(1)
            if not companion.is_file():
                raise FileNotFoundError(f"BrainVision header '{path}' names {key}='{match.group(1)}', which does not "
                                        f"exist next to it")
            digest.update(sha256_file(companion).encode())
    return digest.hexdigest()


def read_recording(path: Path, preload: bool) -> mne.io.BaseRaw:
    """``mne.io.read_raw`` quietly; any failure becomes a :class:`~brain2img.io.FileFormatError` naming the file (MNE's
    error chained)."""
    with reading(path, f"an EEG recording MNE reads ({', '.join(SUPPORTED_EXTENSIONS)})", "EEG recording"):
        return mne.io.read_raw(path, preload=preload, verbose="error")


def pick_channels(raw: mne.io.BaseRaw, picks: list[str] | None, path: Path) -> mne.io.BaseRaw:
    """Keep ``picks`` (in that order) or, by default, the EEG channels not marked bad; in place."""
    if picks is None:
        idx = mne.pick_types(raw.info, eeg=True, exclude="bads")
        if len(idx) == 0:
            types = sorted(set(raw.get_channel_types()))
            raise ValueError(f"recording '{path}' has no good EEG channel (channel types: {types}); name the "
                             f"channels to use with `picks`")
        return raw.pick(idx)
    missing = [name for name in picks if name not in raw.ch_names]
    if missing:
        raise ValueError(f"recording '{path}' lacks the picked channel(s) {missing} (it has {len(raw.ch_names)}: "
                         f"{raw.ch_names[:20]}{' ...' if len(raw.ch_names) > 20 else ''})")
    return raw.pick(list(picks))


def resample_npad(sfreq_in: float, sfreq_out: float, minimum: int = 100) -> int:
    """Padding (samples each side) for MNE's FFT resampling that keeps sample 0 at time 0.

    MNE trims ``round(npad * ratio)`` output samples from the left; with its default ``npad="auto"`` that product is
    usually fractional, which shifts the whole resampled recording by up to half an output sample (0.4 samples,
    about 0.25 rad of a 10 Hz wave, from 500 to 100 Hz). The smallest multiple of the ratio's denominator that is at
    least ``minimum`` makes the trim exact; for rates without a small common denominator, no padding (0).
    """
    ratio = Fraction(sfreq_out).limit_denominator(10_000) / Fraction(sfreq_in).limit_denominator(10_000)
    q = ratio.denominator
    return 0 if q > 100_000 else q * -(-minimum // q)


def resampled_length(n_samples: int, sfreq_in: float, sfreq_out: float) -> int:
    """Samples after resampling ``n_samples`` from ``sfreq_in`` to ``sfreq_out`` (MNE's rounding)."""
    return int(n_samples) if sfreq_in == sfreq_out else max(int(round(n_samples * sfreq_out / sfreq_in)), 1)
