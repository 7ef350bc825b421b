"""RawEEGDataModule and the window functions: counts, values against MNE/NumPy, channel layouts, cache, errors."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import mne
import numpy as np
import pytest
import scipy.signal

from brain2img.data.raw_eeg.files import recording_checksum
from brain2img.data.raw_eeg.windows import channel_layout, count_windows, map_channels, zscore
from tests.builders.raw_eeg import cached, make_dm, noise, write_fif


# ----------------------------------------------------------------------------------------------------- counts
def test_window_counts_edf_bdf_fif(edf_dir, tmp_path):
    fif = write_fif(tmp_path / "short_raw.fif", noise(3, 20.0, 250.0), 250.0)
    files = [edf_dir / "test_generator.edf", edf_dir / "test_generator.bdf", fif]
    # (samples at the source rate, source rate): 600 s at 200 Hz, 30 s at 1000 Hz, 20 s at 250 Hz
    lengths = {files[0]: (120000, 200.0), files[1]: (30000, 1000.0), fif: (5000, 250.0)}
    n_times, stride, sfreq = 256, 100, 100.0
    dm = make_dm([str(f) for f in files], tmp_path / "c", n_times=n_times, window_stride=stride, sfreq=sfreq)
    cache = cached(dm)
    order = sorted(f.resolve() for f in files)
    expected = [((lengths[f][0] / lengths[f][1]) * sfreq - n_times) // stride + 1 for f in files]
    expected = {f.resolve(): int(e) for f, e in zip(files, expected, strict=True)}
    counts = np.bincount(cache.sources, minlength=3)
    assert counts.tolist() == [expected[f] for f in order]
    assert cache.windows.shape == (sum(expected.values()), 16, n_times) and cache.windows.dtype == np.float32
    assert np.array_equal(cache.subjects, cache.sources)  # subject_from="file"
    for i in range(3):
        assert np.array_equal(cache.starts[cache.sources == i], np.arange(counts[i]) * stride)
    manifest = cache.manifest
    assert [r["path"] for r in manifest["files"]] == [str(f) for f in order]
    assert [r["n_windows"] for r in manifest["files"]] == counts.tolist()
    assert [r["sha256"] for r in manifest["files"]] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in order]
    assert manifest["checksums"]["windows.npy"] == hashlib.sha256((dm.cache_folder / "windows.npy")
                                                                  .read_bytes()).hexdigest()
    assert dm.brain_shape == (16, n_times) and dm.sfreq == sfreq and dm.modality == "eeg"


def test_count_windows_formula():
    for n, t, s in [(1000, 100, 100), (1000, 100, 33), (100, 100, 7), (99, 100, 1), (5000, 512, 512)]:
        assert count_windows(n, t, s) == (0 if n < t else int(np.floor((n - t) / s)) + 1)


# ----------------------------------------------------------------------------------------------------- values
def test_windows_match_mne_filter_and_scipy_resample(edf_dir, tmp_path):
    path = edf_dir / "test_generator.edf"  # 11 channels, 200 Hz, 600 s
    n_times, stride = 200, 150
    dm = make_dm(str(path), tmp_path, n_channels=11, channel_policy="error", zscore="none", n_times=n_times,
                 window_stride=stride, l_freq=1.0, h_freq=40.0)
    windows = cached(dm).windows
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    filtered = raw.filter(1.0, 40.0, verbose="error").get_data()
    ref = mne.filter.resample(filtered, up=1.0, down=2.0, verbose="error")  # MNE's function (its default npad=100)
    by_scipy = scipy.signal.resample(filtered, filtered.shape[1] // 2, axis=-1)  # unpadded FFT, periodic edges
    assert len(windows) == (ref.shape[1] - n_times) // stride + 1 == 399
    scale = np.abs(ref).max()
    for k in (0, 7, 200, len(windows) - 1):
        np.testing.assert_allclose(windows[k], ref[:, k * stride : k * stride + n_times], rtol=1e-5, atol=1e-6 * scale)
    for k in (7, 200):  # away from the edges, where the padding schemes differ
        np.testing.assert_allclose(windows[k], by_scipy[:, k * stride : k * stride + n_times], atol=1e-3 * scale)
    # the default z-scoring is exactly NumPy's per-window, per-channel standardisation of the same windows
    z = cached(make_dm(str(path), tmp_path, n_channels=11, channel_policy="error", n_times=n_times,
                       window_stride=stride)).windows
    w = ref[:, 7 * stride : 7 * stride + n_times]
    np.testing.assert_allclose(z[7], (w - w.mean(1, keepdims=True)) / w.std(1, keepdims=True), rtol=1e-4, atol=1e-4)


def test_bandpass_and_resampling_against_analytic_sines(tmp_path):
    sfreq_in, seconds = 500.0, 20.0
    t = np.arange(int(sfreq_in * seconds)) / sfreq_in
    amp = 2e-5
    data = amp * np.stack([np.sin(2 * np.pi * 10 * t),                                # in the 5-30 Hz band
                           np.sin(2 * np.pi * 45 * t),                                # above it
                           np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 1.5 * t)])  # 10 Hz kept, 1.5 Hz removed
    path = write_fif(tmp_path / "sines_raw.fif", data, sfreq_in)
    dm = make_dm(str(path), tmp_path / "c", n_channels=3, channel_policy="error", zscore="none", n_times=400,
                 sfreq=100.0, l_freq=5.0, h_freq=30.0)
    cache = cached(dm)
    assert len(cache.windows) == 5
    k = 2  # a middle window, away from the filter's edge effects
    t_out = (cache.starts[k] + np.arange(400)) / 100.0
    expected = amp * np.sin(2 * np.pi * 10 * t_out)  # zero-phase filtering keeps the phase
    np.testing.assert_allclose(cache.windows[k][0], expected, atol=0.02 * amp)
    np.testing.assert_allclose(cache.windows[k][2], expected, atol=0.02 * amp)
    assert np.abs(cache.windows[k][1]).max() < 0.01 * amp
    spectrum = np.abs(np.fft.rfft(cache.windows[k][0]))
    assert np.fft.rfftfreq(400, 1 / 100.0)[spectrum.argmax()] == pytest.approx(10.0)


# ----------------------------------------------------------------------------------------------------- channels
def test_channel_tiling_and_zero_layouts(edf_dir, tmp_path):
    path = str(edf_dir / "test_generator.edf")
    kw = dict(n_times=500, zscore="window")
    base = cached(make_dm(path, tmp_path, n_channels=11, channel_policy="error", **kw)).windows
    tiled = cached(make_dm(path, tmp_path, n_channels=32, channel_policy="tile", **kw)).windows
    zero = cached(make_dm(path, tmp_path, n_channels=32, channel_policy="zero", **kw)).windows
    rows = list(range(11)) + list(range(11)) + list(range(10))
    np.testing.assert_array_equal(tiled, base[:, rows])
    np.testing.assert_array_equal(zero[:, :11], base)
    assert not zero[:, 11:].any()
    with pytest.raises(ValueError, match=r"test_generator\.edf.*11 channels.*n_channels=32"):
        make_dm(path, tmp_path, n_channels=32, channel_policy="error").prepare_data()
    with pytest.raises(ValueError, match=r"test_generator\.edf.*11 channels, more than n_channels=8"):
        make_dm(path, tmp_path, n_channels=8).prepare_data()


def test_single_channel_tiled_to_all_rows(edf_dir, tmp_path):
    path = str(edf_dir / "test_subsecond.edf")  # 1 channel 'Fp1', 128 Hz, 698 s of real EEG
    windows = cached(make_dm(path, tmp_path, n_channels=4, n_times=64, sfreq=64.0, h_freq=20.0)).windows
    assert windows.shape == ((698 * 64 - 64) // 64 + 1, 4, 64)
    for row in range(1, 4):
        np.testing.assert_array_equal(windows[:, row], windows[:, 0])
    assert windows[:, 0].std() > 0.5


def test_channel_layout_numpy_reference():
    np.testing.assert_array_equal(channel_layout(11, 32, "tile"), np.r_[0:11, 0:11, 0:10])
    np.testing.assert_array_equal(channel_layout(1, 5, "tile"), np.zeros(5, dtype=int))
    np.testing.assert_array_equal(channel_layout(3, 5, "zero"), [0, 1, 2, -1, -1])
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = map_channels(x, channel_layout(3, 5, "zero"))
    np.testing.assert_array_equal(out[:, :3], x)
    assert out.shape == (2, 5, 4) and not out[:, 3:].any()


def test_picks_select_and_order_channels(tmp_path):
    data = noise(4, 10.0, 200.0)
    path = write_fif(tmp_path / "p_raw.fif", data, 200.0, ["Fz", "Cz", "Pz", "Oz"])
    picked = cached(make_dm(str(path), tmp_path / "a", n_channels=2, picks=["Pz", "Fz"], channel_policy="error"))
    full = cached(make_dm(str(path), tmp_path / "b", n_channels=4, channel_policy="error"))
    np.testing.assert_array_equal(picked.windows, full.windows[:, [2, 0]])
    assert picked.manifest["files"][0]["channels"] == ["Pz", "Fz"]


# ----------------------------------------------------------------------------------------------------- z-score
def test_zscore_per_window_and_flat_channel(tmp_path):
    data = noise(3, 30.0, 250.0) * np.array([[1.0], [50.0], [0.0]]) + np.array([[1e-3], [0.0], [0.0]])
    path = write_fif(tmp_path / "z_raw.fif", data, 250.0)
    cache = cached(make_dm(str(path), tmp_path / "c", n_channels=3, channel_policy="error", n_times=250))
    w = cache.windows.astype(np.float64)
    np.testing.assert_allclose(w[:, :2].mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(w[:, :2].std(-1), 1.0, atol=1e-4)
    assert not w[:, 2].any()  # a flat (all-zero) channel has no z-score: zeros, and counted
    assert cache.manifest["files"][0]["flat_channels_zeroed"] == len(w)


def test_zscore_per_recording(tmp_path):
    data = noise(2, 12.0, 100.0) * np.array([[1.0], [30.0]])
    path = write_fif(tmp_path / "r_raw.fif", data, 100.0)
    kw = dict(n_channels=2, channel_policy="error", n_times=100)  # 1200 samples: 12 windows cover the recording
    rec = cached(make_dm(str(path), tmp_path / "a", zscore="recording", **kw)).windows.astype(np.float64)
    none = cached(make_dm(str(path), tmp_path / "b", zscore="none", **kw)).windows.astype(np.float64)
    flat_none = none.transpose(1, 0, 2).reshape(2, -1)
    expected = (none - flat_none.mean(1)[:, None]) / flat_none.std(1)[:, None]
    np.testing.assert_allclose(rec, expected, atol=1e-4)
    flat_rec = rec.transpose(1, 0, 2).reshape(2, -1)
    np.testing.assert_allclose(flat_rec.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(flat_rec.std(1), 1, atol=1e-4)
    assert np.abs(rec.std(-1) - 1).max() > 1e-3  # not per-window


def test_zscore_function():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    z, flat = zscore(x)
    np.testing.assert_allclose(z[0], (x[0] - 2.5) / np.std(x[0]))
    assert flat == 1 and not z[1].any()


# ----------------------------------------------------------------------------------------------------- formats
def write_brainvision(folder: Path, data_uv: np.ndarray, sfreq: float, names: list[str]) -> Path:
    """A minimal BrainVision recording (float32, multiplexed, microvolts) written by hand from the format spec."""
    channels = "\n".join(f"Ch{i + 1}={n},,1,µV" for i, n in enumerate(names))
    (folder / "bv.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=bv.eeg\n"
        f"MarkerFile=bv.vmrk\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels={len(names)}\n"
        f"SamplingInterval={1e6 / sfreq:g}\n\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n[Channel Infos]\n"
        f"{channels}\n", encoding="utf-8")
    (folder / "bv.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=bv.eeg\n\n"
        "[Marker Infos]\nMk1=New Segment,,1,1,0\n", encoding="utf-8")
    data_uv.T.astype("<f4").tofile(folder / "bv.eeg")
    return folder / "bv.vhdr"


def test_brainvision_values_and_checksum(tmp_path):
    data_uv = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32) * 20
    path = write_brainvision(tmp_path, data_uv, 250.0, ["Fz", "Cz", "Pz"])
    dm = make_dm(str(path), tmp_path / "c", n_channels=3, channel_policy="error", n_times=250, sfreq=250.0,
                 l_freq=None, h_freq=None, zscore="none")
    windows = cached(dm).windows
    expected = data_uv.astype(np.float64).reshape(3, 4, 250).transpose(1, 0, 2) * 1e-6  # volts
    np.testing.assert_allclose(windows, expected, rtol=1e-6, atol=1e-12)
    before = recording_checksum(path)
    (tmp_path / "bv.eeg").write_bytes((data_uv * 2).T.astype("<f4").tobytes())  # the header is unchanged
    assert recording_checksum(path) != before


@pytest.mark.parametrize(("fmt", "ext", "needs"), [("brainvision", ".vhdr", "pybv"), ("edf", ".edf", "edfio")])
def test_mne_exported_recordings(tmp_path, fmt, ext, needs):
    if importlib.util.find_spec(needs) is None:
        pytest.skip(f"mne.export to {fmt} needs the optional package '{needs}', which is not installed")
    data = noise(2, 8.0, 200.0)
    raw = mne.io.RawArray(data, mne.create_info(["Fz", "Cz"], 200.0, "eeg"), verbose="error")
    path = tmp_path / f"exported{ext}"
    mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    windows = cached(make_dm(str(path), tmp_path / "c", n_channels=2, channel_policy="error", zscore="none",
                             sfreq=200.0, l_freq=None, h_freq=None, n_times=200)).windows
    assert windows.shape == (8, 2, 200)
    expected = data.reshape(2, 8, 200).transpose(1, 0, 2)
    np.testing.assert_allclose(windows, expected, atol=1e-3 * np.abs(data).max())  # export quantises
