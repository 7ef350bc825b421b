"""Raw EEG recordings for the tests: FIF files written with MNE, seeded noise, and the real EDF/BDF recordings that
ship inside the pyedflib wheel (a dev dependency)."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np

from brain2img.data.raw_eeg import RawEEGDataModule
from brain2img.data.window_cache import WindowCache, open_window_cache


def write_fif(path: Path, data: np.ndarray, sfreq: float, ch_names: list[str] | None = None) -> Path:
    names = ch_names or [f"EEG{i:03d}" for i in range(len(data))]
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")
    raw.save(path, overwrite=True, verbose="error")
    return path


def noise(n_ch: int, seconds: float, sfreq: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1e-5 * rng.standard_normal((n_ch, int(round(seconds * sfreq))))


def pyedflib_recordings() -> Path | None:
    """The folder of real EDF/BDF recordings inside the installed pyedflib wheel (``None`` without pyedflib)."""
    import importlib.util

    spec = importlib.util.find_spec("pyedflib")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "tests" / "data"


SMALL = dict(n_channels=16, n_times=128, sfreq=100.0, l_freq=1.0, h_freq=40.0, batch_size=8, progress=False)


def make_dm(files, cache, **kw) -> RawEEGDataModule:
    return RawEEGDataModule(files, cache_dir=str(cache), **{**SMALL, **kw})


def cached(dm: RawEEGDataModule) -> WindowCache:
    dm.prepare_data()
    return open_window_cache(dm.cache_folder)
