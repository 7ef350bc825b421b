"""fMRI/EEG encoding models on synthetic features: SNR, seeding, EEG spectrum and evoked latency, low-level features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import welch
from skimage.filters import sobel
from skimage.transform import downscale_local_mean

from brain2img.data.simulated import simulator as encoding


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.standard_normal((30, 64)), rng.standard_normal((30, 80))


def test_presentation_order():
    stim, rep = encoding.presentation_order(7, 3, seed=0)
    assert stim.shape == rep.shape == (21,)
    for r in range(3):
        assert sorted(stim[rep == r].tolist()) == list(range(7))
    assert not np.array_equal(stim[:7], stim[7:14])
    with pytest.raises(ValueError, match="n_repeats"):
        encoding.presentation_order(7, 0, seed=0)


@pytest.mark.parametrize("snr", [0.5, 2.0])
def test_fmri_snr_is_signal_over_noise_variance(features, snr):
    low, high = features
    stim = np.repeat(np.arange(30), 40)
    y = encoding.fmri_responses(low, high, stim, n_voxels=50, snr=snr, seed=0)
    assert y.shape == (1200, 50) and y.dtype == np.float32
    means = np.stack([y[stim == s].mean(0) for s in range(30)])
    noise_var = np.mean([y[stim == s].var(0, ddof=1) for s in range(30)], axis=0)
    signal_var = means.var(0) - noise_var / 40  # remove the noise left in means of 40 trials
    assert np.median(signal_var / noise_var) == pytest.approx(snr, rel=0.15)


def test_fmri_seeded_and_subjects_differ(features):
    low, high = features
    stim = np.arange(30)
    a = encoding.fmri_responses(low, high, stim, 40, seed=1, subject=0)
    assert np.array_equal(a, encoding.fmri_responses(low, high, stim, 40, seed=1, subject=0))
    assert not np.array_equal(a, encoding.fmri_responses(low, high, stim, 40, seed=2, subject=0))
    s0 = encoding.fmri_signal(low, high, 40, seed=1, subject=0)
    s1 = encoding.fmri_signal(low, high, 40, seed=1, subject=1)
    assert abs(np.corrcoef(s0.ravel(), s1.ravel())[0, 1]) < 0.3
    with pytest.raises(ValueError, match="snr"):
        encoding.fmri_responses(low, high, stim, 40, snr=0.0)


def test_eeg_background_has_alpha_peak_and_one_over_f():
    noise = encoding.eeg_noise(60, 8, 512, 128.0, np.random.default_rng(0))
    assert noise.shape == (60, 8, 512) and noise.std() == pytest.approx(1.0, rel=0.05)
    freqs, psd = welch(noise, fs=128.0, nperseg=256, axis=-1)
    psd = psd.mean(axis=(0, 1))

    def band(lo, hi):
        return psd[(freqs >= lo) & (freqs <= hi)].mean()

    assert band(8, 12) > 2 * band(4, 7) and band(8, 12) > 2 * band(14, 20)
    sel = (freqs >= 1) & (freqs <= 50) & ((freqs < 6) | (freqs > 14))
    slope = np.polyfit(np.log(freqs[sel]), np.log(psd[sel]), 1)[0]
    assert -1.3 < slope < -0.5, slope
    assert band(2, 4) > band(20, 30) > band(40, 60)


def test_eeg_alpha_phase_is_random_per_trial():
    noise = encoding.eeg_noise(200, 4, 128, 128.0, np.random.default_rng(1), shares=(0.0, 1.0, 0.0))
    # with random phases the trial average cancels: its variance is about 1/n_trials of a single trial's
    assert noise.mean(axis=0).var() < 5 * noise.var() / 200


def test_eeg_evoked_peak_latency_and_snr(features):
    low, high = features
    stim = np.repeat(np.arange(30), 10)
    evoked = encoding.eeg_evoked(low, high, stim, n_channels=16, sfreq=200.0, duration=0.6, seed=0)
    assert evoked.shape == (300, 16, 120)
    gfp = evoked.mean(axis=0).std(axis=0)
    assert 0.1 <= np.argmax(gfp) / 200.0 <= 0.4
    assert gfp[:10].max() < 0.05 * gfp.max()  # nothing before 50 ms
    y = encoding.eeg_responses(low, high, stim, n_channels=16, sfreq=200.0, duration=0.6, snr=0.25, seed=0)
    assert y.dtype == np.float32 and y.shape == evoked.shape
    assert evoked.var() / (y - evoked).var() == pytest.approx(0.25, rel=0.02)
    # stimulus information: trials of one stimulus are more alike than trials of different stimuli
    means = np.stack([y[stim == s].mean(0).ravel() for s in range(30)])
    half = np.stack([y[stim == s][:5].mean(0).ravel() for s in range(30)])
    other = np.stack([y[stim == s][5:].mean(0).ravel() for s in range(30)])
    r = np.corrcoef(half - means.mean(0), other - means.mean(0))[:30, 30:]
    assert np.mean(np.argmax(r, axis=1) == np.arange(30)) > 0.2  # chance: 1/30


def test_eeg_n_times_and_bad_duration(features):
    low, high = features
    y = encoding.eeg_responses(low, high, np.arange(30), n_channels=4, sfreq=100.0, duration=0.55)
    assert y.shape == (30, 4, 55)
    with pytest.raises(ValueError, match="duration"):
        encoding.eeg_responses(low, high, np.arange(30), n_channels=4, sfreq=100.0, duration=0.1)


def test_low_level_features_match_references():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    images = ndimage.uniform_filter(images, size=(1, 5, 5, 1))  # some structure for the edges
    feats = encoding.low_level_features(images, grid=16)
    assert feats.shape == (3, 16 * 16 * 4) and feats.dtype == np.float32
    pixels = downscale_local_mean(images / 255.0, (1, 2, 2, 1)).transpose(0, 3, 1, 2).reshape(3, -1)
    np.testing.assert_allclose(feats[:, : 16 * 16 * 3], pixels, atol=1e-5)
    grey = (images / 255.0) @ np.array([0.299, 0.587, 0.114])
    edges = np.stack([downscale_local_mean(sobel(g), (2, 2)).ravel() for g in grey])
    for ours, ref in zip(feats[:, 16 * 16 * 3 :], edges, strict=True):
        assert np.corrcoef(ours, ref)[0, 1] > 0.99
