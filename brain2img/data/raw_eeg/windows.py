"""Pure functions for cutting continuous EEG into fixed-size windows, mapping channels, z-scoring and splitting.

Nothing here reads EEG files (that is :mod:`brain2img.data.raw_eeg`, through MNE): these functions work on NumPy
arrays ``(n_channels, n_samples)`` and name the recording they came from (``source``) in their errors.

Channel mapping (``channel_layout``) follows DreamDiffusion's pre-training loader (``eeg_pretrain_dataset``): with
fewer channels than the model expects, rows are tiled and the remainder filled with the first rows, so 11 channels
mapped to 32 give rows ``[0..10, 0..10, 0..9]``. DreamDiffusion takes a random contiguous block when there are *more*
channels; here that is an error (choose the channels with ``picks``), since a cached corpus must be deterministic.

The window cache they fill is :mod:`brain2img.data.window_cache`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CHANNEL_POLICIES = ("tile", "zero", "error")
ZSCORE_MODES = ("window", "recording", "none")


# ----------------------------------------------------------------------------------------------------- windowing
def count_windows(n_samples: int, n_times: int, stride: int) -> int:
    """Number of windows of ``n_times`` samples, ``stride`` apart, that fit in ``n_samples`` (0 if none fits)."""
    if n_times < 1 or stride < 1:
        raise ValueError(f"need n_times >= 1 and stride >= 1, got n_times={n_times}, stride={stride}")
    return 0 if n_samples < n_times else (n_samples - n_times) // stride + 1


def window_starts(n_samples: int, n_times: int, stride: int, source: str = "recording", sfreq: float | None = None
                  ) -> np.ndarray:
    """First sample of every window: ``0, stride, 2*stride, ...`` while the window fits.

    Args:
        n_samples: length of the recording in samples.
        n_times: window length in samples.
        stride: distance between window starts in samples.
        source: the recording, named in the error.
        sfreq: its sampling rate, only to state lengths in seconds in the error.

    Raises:
        ValueError: the recording is shorter than one window (never padded).
    """
    n = count_windows(n_samples, n_times, stride)
    if n == 0:
        rate = f" at {sfreq:g} Hz ({n_samples / sfreq:.3f} s vs {n_times / sfreq:.3f} s)" if sfreq else ""
        raise ValueError(f"recording '{source}' is shorter than one window: {n_samples} samples{rate}, but "
                         f"n_times={n_times}; lower n_times or remove the file")
    return np.arange(n, dtype=np.int64) * stride


def cut_windows(data: np.ndarray, starts: np.ndarray, n_times: int) -> np.ndarray:
    """``data[:, s:s+n_times]`` for each start ``s``, stacked: ``(len(starts), n_channels, n_times)`` (a copy)."""
    if data.ndim != 2:
        raise ValueError(f"expected data (n_channels, n_samples), got shape {data.shape}")
    if len(starts) and (starts.min() < 0 or starts.max() + n_times > data.shape[1]):
        raise ValueError(f"windows [{starts.min()}, {starts.max() + n_times}) fall outside the {data.shape[1]} samples")
    out = np.empty((len(starts), data.shape[0], n_times), dtype=data.dtype)
    for k, s in enumerate(starts):
        out[k] = data[:, s : s + n_times]
    return out


# ----------------------------------------------------------------------------------------------------- channels
def channel_layout(n_in: int, n_out: int, policy: str = "tile", source: str = "recording") -> np.ndarray:
    """Which input row fills each of the ``n_out`` output rows (``-1``: a row of zeros).

    Args:
        n_in: channels in the recording (after picking).
        n_out: channels the model expects.
        policy: ``"tile"`` (rows repeated in order: output row ``i`` is input row ``i % n_in``, DreamDiffusion's
            replication), ``"zero"`` (the input rows, then zero rows) or ``"error"`` (``n_in`` must equal ``n_out``).
        source: the recording, named in errors.

    Raises:
        ValueError: unknown policy, no channel, more channels than ``n_out``, or a count mismatch under ``"error"``.
    """
    if policy not in CHANNEL_POLICIES:
        raise ValueError(f"channel_policy must be one of {CHANNEL_POLICIES}, got '{policy}'")
    if n_in < 1:
        raise ValueError(f"recording '{source}' has no channel to use")
    if policy == "error" and n_in != n_out:
        raise ValueError(f"recording '{source}' has {n_in} channels but n_channels={n_out} and channel_policy='error'"
                         f" (use 'tile' or 'zero' to fill missing rows, or `picks` to choose {n_out} channels)")
    if n_in > n_out:
        raise ValueError(f"recording '{source}' has {n_in} channels, more than n_channels={n_out}: choose "
                         f"{n_out} of them with `picks` (or raise n_channels); channels are never dropped silently")
    rows = np.arange(n_out, dtype=np.int64)
    if policy == "tile":
        return rows % n_in
    return np.where(rows < n_in, rows, -1)


def map_channels(x: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """Apply a :func:`channel_layout` to ``x`` ``(..., n_in, n_times)`` -> ``(..., len(layout), n_times)``."""
    layout = np.asarray(layout, dtype=np.int64)
    if layout.max(initial=-1) >= x.shape[-2]:
        raise ValueError(f"layout refers to row {layout.max()} but the data has {x.shape[-2]} channels")
    out = np.zeros((*x.shape[:-2], len(layout), x.shape[-1]), dtype=x.dtype)
    used = layout >= 0
    out[..., used, :] = x[..., layout[used], :]
    return out


# ----------------------------------------------------------------------------------------------------- values
def check_finite(data: np.ndarray, source: str, ch_names: list[str] | None = None) -> None:
    """Raise ``ValueError`` naming the recording, channel and sample of the first NaN/Inf in ``data`` (C, T)."""
    bad = ~np.isfinite(data)
    if bad.any():
        ch, t = (int(v[0]) for v in np.nonzero(bad))
        name = ch_names[ch] if ch_names is not None else str(ch)
        raise ValueError(f"recording '{source}' contains {int(bad.sum())} non-finite values (NaN/Inf), the first in "
                         f"channel '{name}' at sample {t}; clean or interpolate it before pre-training")


def zscore(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, int]:
    """``(x - mean) / std`` along ``axis`` (population std), in float64.

    A slice with zero variance (a flat channel) has no defined z-score: it becomes zeros, and is counted.

    Returns:
        The standardised array and the number of zero-variance slices.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    centred = x - mean
    std = np.sqrt((centred**2).mean(axis=axis, keepdims=True))
    flat = std == 0
    return centred / np.where(flat, 1.0, std), int(flat.sum())


# ----------------------------------------------------------------------------------------------------- splits
def split_windows(sources: np.ndarray, starts: np.ndarray, n_times: int, n_files: int, val_fraction: float,
                  seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train/val window indices, split by recording (seeded), or by one contiguous block for a single recording.

    With several recordings, ``max(1, round(n_files * val_fraction))`` of them (chosen with ``seed``) go to val. With
    one recording, val is a contiguous block of ``max(1, round(n_windows * val_fraction))`` windows at a seeded
    position; training windows that overlap it in time (``window_stride < n_times``) are excluded from train (and
    counted in the returned info), so no sample is seen by both splits.

    Args:
        sources: recording index of each window ``(n_windows,)``, windows of a recording contiguous and in time order.
        starts: first sample of each window.
        n_times: window length in samples.
        n_files: number of recordings.
        val_fraction: in ``[0, 1)``; 0 gives an empty val split.
        seed: random seed.

    Returns:
        ``{"train": idx, "val": idx}`` (sorted int64) and a JSON-serialisable description for the manifest.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(sources)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    everything = np.arange(n, dtype=np.int64)
    if val_fraction == 0:
        return {"train": everything, "val": everything[:0]}, {"by": "none", "seed": seed, "val_fraction": 0.0}
    if n_files > 1:
        n_val = max(1, int(round(n_files * val_fraction)))
        if n_val >= n_files:
            raise ValueError(f"val_fraction={val_fraction} puts {n_val} of the {n_files} recordings in val and none in "
                             f"train; lower val_fraction")
        val_files = np.sort(rng.choice(n_files, size=n_val, replace=False)).astype(np.int64)
        is_val = np.isin(sources, val_files)
        info = {"by": "file", "seed": seed, "val_fraction": val_fraction, "val_files": val_files.tolist()}
        return {"train": everything[~is_val], "val": everything[is_val]}, info
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"the single recording has {n} windows: val_fraction={val_fraction} leaves none for train")
    first = int(rng.integers(0, n - n_val + 1))
    val = everything[first : first + n_val]
    lo, hi = int(starts[first]), int(starts[first + n_val - 1]) + n_times
    overlaps = (starts < hi) & (starts + n_times > lo)
    train = everything[~overlaps]
    if len(train) == 0:
        raise ValueError(f"the single recording's {n} windows all overlap the val block; lower val_fraction or raise "
                         f"window_stride")
    info = {"by": "block", "seed": seed, "val_fraction": val_fraction, "val_windows": [first, first + n_val],
            "excluded_overlapping": int(overlaps.sum() - n_val)}
    return {"train": train, "val": val}, info
