"""Seeded encoding models that turn stimulus features into simulated fMRI and EEG responses.

Features per stimulus: low-level (downsampled pixels and a Sobel edge-energy map) and high-level (EfficientNet-Lite0
pooled features). fMRI voxels are random mixtures of both through random weights plus Gaussian noise; EEG is a few
latent sources with stimulus-driven evoked responses, mixed into channels, plus pink (1/f) noise, alpha-band
oscillations and white noise. SNR is always signal variance / noise variance of single trials.

Opt-in structure shared across subjects (:mod:`~brain2img.data.simulated.sources`): with ``n_sources`` set, fMRI
voxels are mixtures of a few latent sources common to all subjects, through a spatially smooth template plus a
subject-specific part; EEG's ``shared`` weight blends each subject's source time courses, feature drives and mixing
with common ones. The defaults (``n_sources=None`` for fMRI, ``shared=0`` for EEG) give the original numbers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

FMRI, EEG = 1, 2  # stream ids for seeding, so fMRI and EEG of one subject use independent random numbers
EEG_SHARED = 5  # stream id of the EEG source model common to all subjects (4: the fMRI one, in sources.py)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def standardize(x: np.ndarray, axis: int = 0, eps: float = 1e-8) -> np.ndarray:
    """Zero mean, unit variance along ``axis`` (constant columns become zero)."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(axis=axis, keepdims=True)) / (x.std(axis=axis, keepdims=True) + eps)


def low_level_features(images: np.ndarray, grid: int = 16) -> np.ndarray:
    """Downsampled pixels ``(grid, grid, 3)`` and Sobel edge energy ``(grid, grid)`` per image, flattened.

    Args:
        images: uint8 ``(N, H, W, 3)`` with ``H, W >= grid``.
        grid: side of the downsampled maps.

    Returns:
        float32 ``(N, 4 * grid * grid)``.
    """
    x = images.astype(np.float32) / 255.0
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    smooth = [1.0, 2.0, 1.0]
    diff = [-1.0, 0.0, 1.0]
    gy = ndimage.correlate1d(ndimage.correlate1d(grey, smooth, axis=2), diff, axis=1)  # per image: never across N
    gx = ndimage.correlate1d(ndimage.correlate1d(grey, smooth, axis=1), diff, axis=2)
    edges = np.hypot(gx, gy)
    pix = F.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), grid)
    edge = F.adaptive_avg_pool2d(torch.from_numpy(edges)[:, None], grid)
    return torch.cat([pix.flatten(1), edge.flatten(1)], dim=1).numpy().astype(np.float32)


def high_level_features(images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """EfficientNet-Lite0 pooled features of uint8 ``(N, H, W, 3)`` images: float32 ``(N, 1280)``."""
    from brain2img.encoders.image_features import EfficientNetLite0Features

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return EfficientNetLite0Features().encode(x, batch_size=batch_size)["pooled"].numpy().astype(np.float32)


def presentation_order(n_stimuli: int, n_repeats: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Trial sequence: each repeat shows every stimulus once, in a fresh random order.

    Returns:
        ``trial_stimulus`` and ``trial_repeat``, int64 ``(n_stimuli * n_repeats,)``.
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be at least 1, got {n_repeats}")
    rng = _rng(seed, 3)
    stim = np.concatenate([rng.permutation(n_stimuli) for _ in range(n_repeats)]).astype(np.int64)
    rep = np.repeat(np.arange(n_repeats, dtype=np.int64), n_stimuli)
    return stim, rep


def _check_snr(snr: float) -> None:
    if not snr > 0 or not np.isfinite(snr):
        raise ValueError(f"snr must be a positive finite number (signal variance / noise variance), got {snr}")


def check_shared(shared: float) -> None:
    """Raise a ValueError unless ``shared`` (the share of structure common to all subjects) is in ``[0, 1]``."""
    if not 0.0 <= shared <= 1.0:
        raise ValueError(f"shared must be in [0, 1] (share of the structure common to all subjects), got {shared}")


def fmri_signal(low: np.ndarray, high: np.ndarray, n_voxels: int, seed: int, subject: int = 0,
                n_sources: int | None = None, shared: float = 0.0) -> np.ndarray:
    """Noise-free voxel responses per stimulus, each voxel standardised over stimuli: float64 ``(N, n_voxels)``.

    Without ``n_sources``, voxel ``v`` responds ``sqrt(m_v) * s_low + sqrt(1 - m_v) * s_high`` where ``s_*`` are
    random projections of the standardised low/high-level features and ``m_v ~ U(0, 1)`` is the voxel's own
    low-level weighting (every voxel independent). With ``n_sources``, voxels mix that many latent sources shared by
    all subjects (:func:`brain2img.data.simulated.sources.fmri_source_signal`, ``shared``: share of the common
    template in the mixing).
    """
    if n_voxels < 1:
        raise ValueError(f"n_voxels must be at least 1, got {n_voxels}")
    if n_sources is not None:
        from brain2img.data.simulated.sources import fmri_source_signal  # sources builds on this module

        return fmri_source_signal(low, high, n_voxels, seed, subject, n_sources, shared)
    if shared != 0:
        raise ValueError(f"shared={shared} needs n_sources (the independent-voxel model has no shared structure)")
    rng = _rng(seed, FMRI, subject, 0)
    zl, zh = standardize(low), standardize(high)
    s_low = standardize(zl @ rng.standard_normal((zl.shape[1], n_voxels)))
    s_high = standardize(zh @ rng.standard_normal((zh.shape[1], n_voxels)))
    mix = rng.uniform(0.0, 1.0, size=n_voxels)
    return standardize(np.sqrt(mix) * s_low + np.sqrt(1.0 - mix) * s_high)


def fmri_responses(low: np.ndarray, high: np.ndarray, trial_stimulus: np.ndarray, n_voxels: int, snr: float = 1.0,
                   seed: int = 0, subject: int = 0, n_sources: int | None = None, shared: float = 0.0
                   ) -> np.ndarray:
    """Single-trial fMRI responses: the stimulus's voxel signal plus fresh Gaussian noise of variance ``1 / snr``.

    The noise draws do not depend on ``snr`` (only their scale does), so a higher SNR is exactly less noise.

    Args:
        low: low-level features ``(N, F_low)``.
        high: high-level features ``(N, F_high)``.
        trial_stimulus: stimulus index of each trial ``(n_trials,)``.
        n_voxels: number of voxels of this subject.
        snr: signal variance / noise variance per voxel and single trial.
        seed: random seed.
        subject: subject index (each has its own weights and noise).
        n_sources: ``None`` (every voxel its own random projection) or the number of latent sources shared by all
            subjects (see :func:`fmri_signal`).
        shared: with ``n_sources``, the share of the common template in the subject's mixing, in ``[0, 1]``.

    Returns:
        float32 ``(n_trials, n_voxels)``.
    """
    _check_snr(snr)
    signal = fmri_signal(low, high, n_voxels, seed, subject, n_sources, shared)
    noise = _rng(seed, FMRI, subject, 1).standard_normal((len(trial_stimulus), n_voxels))
    return (signal[trial_stimulus] + noise / np.sqrt(snr)).astype(np.float32)


def pink_noise(shape: tuple[int, ...], rng: np.random.Generator, oversample: int = 4) -> np.ndarray:
    """Unit-variance noise with a 1/f power spectrum along the last axis (a window of a longer series)."""
    n = shape[-1]
    long = n * oversample
    spec = rng.standard_normal((*shape[:-1], long // 2 + 1)) + 1j * rng.standard_normal((*shape[:-1], long // 2 + 1))
    freqs = np.fft.rfftfreq(long)
    spec[..., 0] = 0.0
    spec[..., 1:] /= np.sqrt(freqs[1:])
    x = np.fft.irfft(spec, n=long, axis=-1)
    start = rng.integers(0, long - n + 1)
    x = x[..., start : start + n]
    return x / x.std()


def eeg_noise(n_trials: int, n_channels: int, n_times: int, sfreq: float, rng: np.random.Generator,
              shares: tuple[float, float, float] = (0.6, 0.3, 0.1), n_alpha: int = 2) -> np.ndarray:
    """Background EEG of unit variance: spatially mixed pink noise + alpha oscillations + white noise.

    Alpha: ``n_alpha`` generators, each per trial a sinusoid of random frequency in 8-12 Hz, random phase and
    log-normal amplitude, projected to channels by a positive spatial pattern.

    Args:
        n_trials: number of trials.
        n_channels: number of channels.
        n_times: samples per trial.
        sfreq: sampling frequency in Hz.
        rng: random generator.
        shares: variance shares of (pink, alpha, white), summing to 1.
        n_alpha: number of alpha generators.

    Returns:
        float64 ``(n_trials, n_channels, n_times)``.
    """
    mixing = rng.standard_normal((n_channels, n_channels))
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    pink = np.einsum("cd,ndt->nct", mixing, pink_noise((n_trials, n_channels, n_times), rng))
    t = np.arange(n_times) / sfreq
    freq = rng.uniform(8.0, 12.0, size=(n_trials, n_alpha, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_trials, n_alpha, 1))
    amp = rng.lognormal(0.0, 0.3, size=(n_trials, n_alpha, 1))
    waves = amp * np.sin(2 * np.pi * freq * t + phase)
    alpha = np.einsum("ca,nat->nct", np.abs(rng.standard_normal((n_channels, n_alpha))), waves)
    white = rng.standard_normal((n_trials, n_channels, n_times))
    parts = [pink, alpha, white]
    return sum(np.sqrt(s) * p / p.std() for s, p in zip(shares, parts, strict=True))


def _eeg_params(rng: np.random.Generator, n_low: int, n_high: int, n_channels: int, duration: float,
                n_sources: int) -> list[np.ndarray]:
    """Draw latency, width, low/high-level projection weights and channel mixing of ``n_sources`` EEG sources."""
    return [rng.uniform(0.1, min(0.4, duration - 0.05), size=n_sources), rng.uniform(0.02, 0.05, size=n_sources),
            rng.standard_normal((n_low, n_sources)), rng.standard_normal((n_high, n_sources)),
            rng.standard_normal((n_channels, n_sources)) / np.sqrt(n_sources)]


def eeg_source_model(n_low: int, n_high: int, n_channels: int, duration: float, seed: int = 0, subject: int = 0,
                     n_sources: int = 6, shared: float = 0.0
                     ) -> tuple[list[np.ndarray], np.random.Generator]:
    """One subject's EEG sources: ``[latency, width, w_low, w_high, mixing]`` and its generator (for the jitter).

    With ``shared > 0`` each part blends the subject's draw with a draw common to all subjects (same seed): latency
    and width linearly, ``(1 - shared) * own + shared * common``; projection weights and mixing (Gaussian) in
    variance, ``sqrt(1 - shared) * own + sqrt(shared) * common``. ``shared=0`` is the subject's own draw exactly.
    """
    if n_sources < 1:
        raise ValueError(f"n_sources must be at least 1, got {n_sources}")
    check_shared(shared)
    rng = _rng(seed, EEG, subject, 0)
    own = _eeg_params(rng, n_low, n_high, n_channels, duration, n_sources)
    if shared == 0:
        return own, rng
    common = _eeg_params(_rng(seed, EEG_SHARED, 1), n_low, n_high, n_channels, duration, n_sources)
    linear = [(1 - shared) * o + shared * c for o, c in zip(own[:2], common[:2], strict=True)]
    gaussian = [np.sqrt(1 - shared) * o + np.sqrt(shared) * c for o, c in zip(own[2:], common[2:], strict=True)]
    return linear + gaussian, rng


def eeg_time_courses(latency: np.ndarray, width: np.ndarray, jitter: np.ndarray, n_times: int, sfreq: float
                     ) -> np.ndarray:
    """Gaussian source time courses ``(n, K, n_times)`` peaking at ``latency + jitter`` (``jitter``: ``(n, K, 1)``)."""
    t = np.arange(n_times) / sfreq
    return np.exp(-0.5 * ((t - latency[:, None] - jitter) / width[:, None]) ** 2)


def eeg_times(sfreq: float, duration: float) -> int:
    """Samples per epoch, ``round(sfreq * duration)``, after checking the epoch is long enough."""
    n_times = int(round(sfreq * duration))
    if duration < 0.2 or n_times < 8:
        raise ValueError(f"EEG epochs need duration >= 0.2 s and at least 8 samples, got duration={duration} s at "
                         f"sfreq={sfreq} Hz ({n_times} samples)")
    return n_times


def eeg_evoked(low: np.ndarray, high: np.ndarray, trial_stimulus: np.ndarray, n_channels: int, sfreq: float,
               duration: float, seed: int = 0, subject: int = 0, n_sources: int = 6, shared: float = 0.0
               ) -> np.ndarray:
    """Noise-free evoked responses: latent sources with stimulus-driven amplitudes, mixed into channels.

    Source ``k`` has a Gaussian time course peaking at a latency in 100-400 ms (jittered by 10 ms per trial) and an
    amplitude ``1 + 0.8 * z_k(stimulus)`` where ``z_k`` is a standardised random projection of the features: early
    sources lean on low-level features, late ones on high-level features. ``shared`` blends latencies, widths,
    projections and mixing with a draw common to all subjects (:func:`eeg_source_model`).

    Returns:
        float64 ``(n_trials, n_channels, round(sfreq * duration))``.
    """
    n_times = eeg_times(sfreq, duration)
    zl, zh = standardize(low), standardize(high)
    (latency, width, w_low, w_high, mixing), rng = eeg_source_model(zl.shape[1], zh.shape[1], n_channels, duration,
                                                                     seed, subject, n_sources, shared)
    late = (latency - 0.1) / 0.3
    drive = (1 - late) * standardize(zl @ w_low)
    drive += late * standardize(zh @ w_high)
    amplitude = 1.0 + 0.8 * standardize(drive)
    jitter = rng.normal(0.0, 0.01, size=(len(trial_stimulus), n_sources, 1))
    kernels = eeg_time_courses(latency, width, jitter, n_times, sfreq)
    return np.einsum("ck,nk,nkt->nct", mixing, amplitude[trial_stimulus], kernels)


def eeg_responses(low: np.ndarray, high: np.ndarray, trial_stimulus: np.ndarray, n_channels: int = 32,
                  sfreq: float = 128.0, duration: float = 0.5, snr: float = 1.0, seed: int = 0, subject: int = 0,
                  n_sources: int = 6, shared: float = 0.0) -> np.ndarray:
    """Single-trial EEG: :func:`eeg_evoked` plus :func:`eeg_noise` scaled to the requested SNR.

    Args:
        low: low-level features ``(N, F_low)``.
        high: high-level features ``(N, F_high)``.
        trial_stimulus: stimulus index of each trial ``(n_trials,)``.
        n_channels: number of channels.
        sfreq: sampling frequency in Hz.
        duration: epoch length in seconds from stimulus onset; ``n_times = round(sfreq * duration)``.
        snr: variance of the evoked signal / variance of the background (over trials, channels and times).
        seed: random seed.
        subject: subject index (own sources, mixing and noise).
        n_sources: number of latent sources.
        shared: weight of the source model common to all subjects, in ``[0, 1]`` (:func:`eeg_source_model`).

    Returns:
        float32 ``(n_trials, n_channels, n_times)``.
    """
    _check_snr(snr)
    if n_channels < 1 or sfreq <= 0:
        raise ValueError(f"need n_channels >= 1 and sfreq > 0, got n_channels={n_channels}, sfreq={sfreq}")
    signal = eeg_evoked(low, high, trial_stimulus, n_channels, sfreq, duration, seed, subject, n_sources, shared)
    return add_eeg_background(signal, snr, sfreq, _rng(seed, EEG, subject, 1))


def add_eeg_background(signal: np.ndarray, snr: float, sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """``signal`` plus :func:`eeg_noise` scaled to ``signal.var() / snr``: float32 of the same shape."""
    noise = eeg_noise(*signal.shape, sfreq=sfreq, rng=rng)
    return (signal + noise * np.sqrt(signal.var() / snr)).astype(np.float32)
