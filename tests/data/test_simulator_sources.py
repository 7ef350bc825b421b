"""Shared latent sources and spontaneous activity: defaults unchanged, low rank, cross-subject structure, errors."""

from __future__ import annotations

import numpy as np
import pytest

from brain2img.data.simulated import SimulatedDataModule, sources
from brain2img.data.simulated import simulator as encoding


def _rng(*stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(stream)))


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.standard_normal((60, 64)), rng.standard_normal((60, 80))


def _off_diagonal_corr(a: np.ndarray, b: np.ndarray, min_distance: int = 1) -> float:
    """Correlation of two voxel-voxel correlation matrices over the pairs at least ``min_distance`` columns apart."""
    ca, cb = np.corrcoef(a, rowvar=False), np.corrcoef(b, rowvar=False)
    i, j = np.triu_indices(len(ca), min_distance)
    return float(np.corrcoef(ca[i, j], cb[i, j])[0, 1])


# ----------------------------------------------------------------- the defaults are the original formulas
def test_default_fmri_is_the_independent_voxel_model(features):
    low, high = features
    stim = np.repeat(np.arange(60), 2)
    seed, subject, n_vox, snr = 3, 1, 70, 0.5
    # the original model written out: per voxel its own low/high projections and mixing weight, then noise
    draw = _rng(seed, encoding.FMRI, subject, 0)
    zl, zh = encoding.standardize(low), encoding.standardize(high)
    s_low = encoding.standardize(zl @ draw.standard_normal((64, n_vox)))
    s_high = encoding.standardize(zh @ draw.standard_normal((80, n_vox)))
    m = draw.uniform(0.0, 1.0, size=n_vox)
    signal = encoding.standardize(np.sqrt(m) * s_low + np.sqrt(1.0 - m) * s_high)
    noise = _rng(seed, encoding.FMRI, subject, 1).standard_normal((len(stim), n_vox))
    expected = (signal[stim] + noise / np.sqrt(snr)).astype(np.float32)
    for got in (encoding.fmri_responses(low, high, stim, n_vox, snr, seed, subject),
                encoding.fmri_responses(low, high, stim, n_vox, snr, seed, subject, n_sources=None, shared=0.0)):
        assert np.array_equal(got, expected)


def test_default_eeg_is_the_original_model(features):
    low, high = features
    stim = np.repeat(np.arange(60), 2)
    seed, subject, n_ch, sfreq, duration, k = 2, 4, 8, 100.0, 0.55, 6
    draw = _rng(seed, encoding.EEG, subject, 0)
    zl, zh = encoding.standardize(low), encoding.standardize(high)
    latency = draw.uniform(0.1, min(0.4, duration - 0.05), size=k)
    width = draw.uniform(0.02, 0.05, size=k)
    late = (latency - 0.1) / 0.3
    drive = (1 - late) * encoding.standardize(zl @ draw.standard_normal((64, k)))
    drive += late * encoding.standardize(zh @ draw.standard_normal((80, k)))
    amplitude = 1.0 + 0.8 * encoding.standardize(drive)
    mixing = draw.standard_normal((n_ch, k)) / np.sqrt(k)
    jitter = draw.normal(0.0, 0.01, size=(len(stim), k, 1))
    t = np.arange(55) / sfreq
    kernels = np.exp(-0.5 * ((t - latency[:, None] - jitter) / width[:, None]) ** 2)
    evoked = np.einsum("ck,nk,nkt->nct", mixing, amplitude[stim], kernels)
    assert np.array_equal(encoding.eeg_evoked(low, high, stim, n_ch, sfreq, duration, seed, subject), evoked)
    assert np.array_equal(encoding.eeg_evoked(low, high, stim, n_ch, sfreq, duration, seed, subject, shared=0.0),
                          evoked)
    background = encoding.eeg_noise(len(stim), n_ch, 55, sfreq, _rng(seed, encoding.EEG, subject, 1))
    expected = (evoked + background * np.sqrt(evoked.var() / 0.3)).astype(np.float32)
    got = encoding.eeg_responses(low, high, stim, n_ch, sfreq, duration, 0.3, seed, subject)
    assert np.array_equal(got, expected)


def test_default_datamodule_config_is_unchanged(tmp_path):
    base = {"modality": "fmri", "subject": 0, "n_repeats": 3, "snr": 1.0, "val_fraction": 0.1,
            "test_fraction": 0.2, "n_voxels": 1500}
    cfg = SimulatedDataModule(cache_dir=str(tmp_path)).cache_config()
    assert {k: cfg[k] for k in base} == base and not {"n_sources", "shared"} & set(cfg)
    eeg = SimulatedDataModule(modality="eeg", cache_dir=str(tmp_path))
    assert not {"n_sources", "shared"} & set(eeg.cache_config())
    opted = SimulatedDataModule(n_sources=16, shared=0.8, cache_dir=str(tmp_path))
    assert (opted.cache_config()["n_sources"], opted.cache_config()["shared"]) == (16, 0.8)
    assert opted.data_folder != SimulatedDataModule(cache_dir=str(tmp_path)).data_folder


# ----------------------------------------------------------------- the fMRI source model
def test_source_signal_is_standardised_and_rank_k(features):
    low, high = features
    signal = encoding.fmri_signal(low, high, 300, seed=0, subject=0, n_sources=8, shared=0.5)
    assert signal.shape == (60, 300)
    np.testing.assert_allclose(signal.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(signal.std(0), 1.0, atol=1e-6)
    eig = np.linalg.eigvalsh(np.cov(signal, rowvar=False))[::-1]
    assert eig[7] > 1e-3 * eig[0] and eig[8] < 1e-9 * eig[0]  # exactly 8 non-zero eigenvalues
    y = encoding.fmri_responses(low, high, np.arange(60), 300, snr=2.0, n_sources=8, shared=0.5)
    assert y.shape == (60, 300) and y.dtype == np.float32
    noise = _rng(0, encoding.FMRI, 0, 1).standard_normal((60, 300))  # the default model's noise stream
    np.testing.assert_allclose(y, signal + noise / np.sqrt(2.0), atol=1e-5)


def test_sources_are_shared_and_template_is_aligned(features):
    low, high = features
    assert np.array_equal(sources.fmri_sources(low, high, 5, 8), sources.fmri_sources(low, high, 5, 8))
    long, short = sources.fmri_template(5000, 5, 8), sources.fmri_template(700, 5, 8)
    assert long.shape == (8, 5000) and np.array_equal(long[:, :700], short)  # column j is column j for everyone
    np.testing.assert_allclose(np.linalg.norm(long, axis=0), 1.0)
    direct = sources.loading_field(_rng(5, sources.SOURCES, 2), 8, 700)  # the uncached draw
    assert np.array_equal(direct, short)
    a = sources.fmri_mixing(300, 5, subject=0, n_sources=8, shared=1.0)
    b = sources.fmri_mixing(200, 5, subject=1, n_sources=8, shared=1.0)
    np.testing.assert_allclose(a[:, :200], b, atol=1e-12)
    assert not np.allclose(a[:, :200], sources.fmri_mixing(200, 5, subject=1, n_sources=8, shared=0.0))


def test_voxel_covariance_across_subjects_follows_shared(features):
    low, high = features
    stim = np.repeat(np.arange(60), 4)
    r = {}
    for shared in (0.0, 0.8, 1.0):
        a = encoding.fmri_responses(low, high, stim, 400, snr=1.0, seed=0, subject=0, n_sources=16, shared=shared)
        b = encoding.fmri_responses(low, high, stim, 350, snr=1.0, seed=0, subject=1, n_sources=16, shared=shared)
        # pairs at least two areas apart: nearby voxels are alike in every subject (smooth cortex), far ones only
        # through the shared template
        r[shared] = _off_diagonal_corr(a[:, :350], b, min_distance=2 * sources.AREA_COLUMNS)
    assert r[1.0] > 0.75 and r[1.0] > r[0.8] > r[0.0] + 0.3 and abs(r[0.0]) < 0.2, r
    clean = [encoding.fmri_signal(low, high, n, seed=0, subject=s, n_sources=16, shared=1.0)
             for s, n in ((0, 400), (1, 350))]
    assert _off_diagonal_corr(clean[0][:, :350], clean[1]) > 0.999  # identical without noise


def test_mixing_is_smooth_and_local(features):
    low, high = features
    signal = encoding.fmri_signal(low, high, 1500, seed=0, n_sources=32, shared=0.8)
    corr = np.corrcoef(signal, rowvar=False)
    near = np.mean(np.diagonal(corr, 1))
    patch = np.mean(np.diagonal(corr, 16))
    far = np.mean(np.abs([np.mean(np.diagonal(corr, d)) for d in range(200, 260)]))
    assert near > 0.9 and patch > 0.2 and far < 0.1, (near, patch, far)


# ----------------------------------------------------------------- spontaneous fMRI
def test_spontaneous_fmri_has_the_subjects_mixing(features):
    low, high = features
    k, n_vox = 8, 120
    signal = sources.fmri_spontaneous_signal(4000, n_vox, seed=0, subject=3, n_sources=k, shared=0.5)
    own = sources.fmri_mixing(n_vox, 0, 3, k, 0.5)
    other = sources.fmri_mixing(n_vox, 0, 4, k, 0.5)

    def residual(x, mixing):  # share of x outside the row space of the mixing, by least squares
        coef = np.linalg.lstsq(mixing.T, x.T, rcond=None)[0]
        return float(np.sum((x - coef.T @ mixing) ** 2) / np.sum(x**2))

    assert residual(signal, own) < 1e-20 and residual(signal, other) > 0.1
    np.testing.assert_allclose(np.cov(signal, rowvar=False), own.T @ own, atol=0.1)  # i.i.d. unit sources
    np.testing.assert_allclose(signal.var(0), 1.0, atol=0.1)
    evoked = encoding.fmri_signal(low, high, n_vox, seed=0, subject=3, n_sources=k, shared=0.5)
    evoked_other = encoding.fmri_signal(low, high, n_vox, seed=0, subject=4, n_sources=k, shared=0.5)
    assert _off_diagonal_corr(signal, evoked) > _off_diagonal_corr(signal, evoked_other) + 0.2
    y = sources.fmri_spontaneous(4000, n_vox, snr=0.5, seed=0, subject=3, n_sources=k, shared=0.5)
    assert y.dtype == np.float32 and y.shape == (4000, n_vox)
    assert np.median((y - signal).var(0)) == pytest.approx(2.0, rel=0.1)  # noise variance 1 / snr
    assert np.array_equal(y, sources.fmri_spontaneous(4000, n_vox, 0.5, 0, 3, k, 0.5))


def test_spontaneous_fmri_autocorrelation():
    x = sources.fmri_spontaneous_signal(3000, 50, seed=1, subject=0, n_sources=4, shared=0.0, autocorrelation=0.6)
    lag1 = np.mean([np.corrcoef(v[:-1], v[1:])[0, 1] for v in x.T])
    assert lag1 == pytest.approx(0.6, abs=0.05)
    assert np.var(x, axis=0).mean() == pytest.approx(1.0, rel=0.15)
    white = sources.fmri_spontaneous_signal(3000, 50, seed=1, subject=0, n_sources=4, shared=0.0)
    assert abs(np.mean([np.corrcoef(v[:-1], v[1:])[0, 1] for v in white.T])) < 0.05


# ----------------------------------------------------------------- EEG
def test_eeg_shared_source_model(features):
    low, high = features
    stim = np.repeat(np.arange(60), 5)

    def stimulus_means(subject, shared):
        x = encoding.eeg_evoked(low, high, stim, 16, 128.0, 0.5, seed=0, subject=subject, shared=shared)
        return np.stack([x[stim == s].mean(0) for s in range(60)]).ravel()

    assert np.corrcoef(stimulus_means(0, 1.0), stimulus_means(1, 1.0))[0, 1] > 0.95
    assert abs(np.corrcoef(stimulus_means(0, 0.0), stimulus_means(1, 0.0))[0, 1]) < 0.5
    y = encoding.eeg_responses(low, high, stim, 16, 128.0, 0.5, snr=0.5, n_sources=4, shared=0.7)
    evoked = encoding.eeg_evoked(low, high, stim, 16, 128.0, 0.5, n_sources=4, shared=0.7)
    assert evoked.var() / (y - evoked).var() == pytest.approx(0.5, rel=0.02)


def test_spontaneous_eeg_has_the_subjects_mixing(features):
    low, high = features
    stim = np.repeat(np.arange(60), 5)
    dims = (64, 80)  # the features' sizes fix which mixing is the subject's

    def channel_cov(x):
        c = np.cov(x.transpose(1, 0, 2).reshape(x.shape[1], -1))
        return c[np.triu_indices(len(c), 1)]

    evoked = channel_cov(encoding.eeg_evoked(low, high, stim, 16, 128.0, 0.5, seed=0, subject=0))
    own = sources.eeg_spontaneous(300, 16, 128.0, 0.5, snr=100.0, seed=0, subject=0, feature_dims=dims)
    other = sources.eeg_spontaneous(300, 16, 128.0, 0.5, snr=100.0, seed=0, subject=1, feature_dims=dims)
    assert own.shape == (300, 16, 64) and own.dtype == np.float32
    assert np.corrcoef(evoked, channel_cov(own))[0, 1] > 0.9
    assert abs(np.corrcoef(evoked, channel_cov(other))[0, 1]) < 0.5
    noisy = sources.eeg_spontaneous(300, 16, 128.0, 0.5, snr=0.5, seed=0, subject=0, feature_dims=dims)
    assert np.corrcoef(own.ravel(), noisy.ravel())[0, 1] > 0.3  # same sources, more background
    assert not np.allclose(own.mean(0), 0.0, atol=1e-3)  # evoked-like: time courses peak in every window


# ----------------------------------------------------------------- errors
def test_bad_settings(features, tmp_path):
    low, high = features
    with pytest.raises(ValueError, match="shared"):
        encoding.fmri_signal(low, high, 10, seed=0, shared=0.5)  # no sources to share
    with pytest.raises(ValueError, match="shared"):
        encoding.fmri_signal(low, high, 10, seed=0, n_sources=4, shared=1.5)
    with pytest.raises(ValueError, match="n_sources"):
        encoding.fmri_signal(low, high, 10, seed=0, n_sources=0)
    with pytest.raises(ValueError, match="shared"):
        encoding.eeg_evoked(low, high, np.arange(5), 4, 128.0, 0.5, shared=-0.1)
    with pytest.raises(ValueError, match="autocorrelation"):
        sources.fmri_spontaneous(10, 20, autocorrelation=1.0)
    with pytest.raises(ValueError, match="snr"):
        sources.eeg_spontaneous(10, snr=0.0)
    with pytest.raises(ValueError, match=r"data\.n_sources"):
        SimulatedDataModule(n_sources=0, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"data\.shared"):
        SimulatedDataModule(n_sources=8, shared=2.0, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"data\.shared.*data\.n_sources"):
        SimulatedDataModule(shared=0.5, cache_dir=str(tmp_path))
