"""Latent sources shared by simulated subjects, and spontaneous ("resting-state") activity without any stimulus.

The default simulator (:mod:`~brain2img.data.simulated.simulator`) gives every voxel of every subject its own random
projection of the image features: nothing is shared across subjects and nothing is low-dimensional, so an
unlabelled corpus cannot teach an encoder anything that transfers. The opt-in source model below adds both.

**fMRI source model** (``n_sources = K``, ``shared`` in ``[0, 1]``):

- *sources*, common to all subjects (their random numbers depend on the seed only): per stimulus,
  ``u_k = std(sqrt(m_k) * std(z_low @ a_k) + sqrt(1 - m_k) * std(z_high @ b_k))`` with ``z_*`` the standardised
  low/high-level features, Gaussian ``a_k, b_k`` and ``m_k ~ U(0, 1)`` (``std``: standardised over stimuli);
- *mixing* of subject ``s`` (``K x V_s``): ``M_s = sqrt(shared) * T[:, :V_s] + sqrt(1 - shared) * R_s``, each
  column scaled to unit norm. ``T`` is a template common to all subjects (anatomical alignment: voxel ``j`` of every
  subject sits at template column ``j``), ``R_s`` the subject's own part. Both are draws of one random loading field
  (:func:`loading_field`): the voxel columns are tiled into areas of :data:`AREA_COLUMNS` consecutive columns, each
  area dominated by one source (a positive loading, :data:`AREA_SHARE` of the variance) on top of Gaussian loadings
  on all sources, everything smoothed along the columns (Gaussian, :data:`SMOOTH_COLUMNS` columns), so neighbouring
  voxels (an MAE patch of 16 voxels) mix nearly the same sources, like voxels of one visual area;
- *responses*: voxel signal ``std(U @ M_s)`` (rank ``K``), single trials add Gaussian noise of variance ``1 / snr``.

Even at ``shared=0`` subjects have the same *kind* of structure (smooth, area-wise loadings), only not the same
sources at the same columns: a corpus then still teaches local smoothness, but not the template. Example: the top 32
principal components of a 100-subject corpus (K=32) capture 55 % of a benchmark subject's signal variance at
``shared=0``, 88 % at ``shared=0.8`` and 100 % at ``shared=1``.

**Spontaneous fMRI** (:func:`fmri_spontaneous`): per sample i.i.d. ``N(0, 1)`` sources (AR(1) over consecutive
samples with ``autocorrelation``) through the same ``M_s``, plus the same noise: the subject's mixing structure
without any image. Voxels have unit signal variance, as the evoked ones.

**Spontaneous EEG** (:func:`eeg_spontaneous`): the subject's evoked-like source time courses
(:func:`~brain2img.data.simulated.simulator.eeg_source_model`, ``shared`` as there) with random amplitudes
``1 + 0.8 * N(0, 1)`` and random timing (``jitter``) per window instead of stimulus-driven ones, mixed by the
subject's mixing, plus the usual background (:func:`~brain2img.data.simulated.simulator.eeg_noise`).

Random streams (``SeedSequence([seed, ...])``): sources ``[seed, 4, 1]``, template ``[seed, 4, 2]``, subject part
``[seed, 1, s, 2]``, spontaneous fMRI sources / noise ``[seed, 1, s, 3]`` / ``[seed, 1, s, 4]``, spontaneous EEG
amplitudes / background ``[seed, 2, s, 2]`` / ``[seed, 2, s, 3]``, the common EEG source model ``[seed, 5, 1]``.
None ends in a zero (``SeedSequence`` does not tell ``[a, b]`` from ``[a, b, 0]``) and none collides with the
default model's streams, which therefore give the same numbers as before.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from brain2img.data.simulated.simulator import (
    EEG,
    FMRI,
    _check_snr,
    _rng,
    add_eeg_background,
    check_shared,
    eeg_source_model,
    eeg_time_courses,
    eeg_times,
    standardize,
)

SOURCES = 4  #: stream id of the fMRI sources and template common to all subjects
AREA_COLUMNS = 48  #: consecutive voxel columns dominated by one source (three 16-voxel MAE patches)
AREA_SHARE = 0.5  #: variance share of a column's area source in its loadings (the rest: all sources, smooth noise)
SMOOTH_COLUMNS = 4.0  #: standard deviation (in columns) of the Gaussian smoothing of the loadings along the voxels
TEMPLATE_BLOCK = 4096  #: the template is drawn (and cached) in whole blocks of this many columns
FEATURE_DIMS = (1024, 1280)  #: low/high-level feature sizes of the benchmark (16 x 16 x 4 maps, EfficientNet-Lite0)


def _check_sources(n_sources: int) -> None:
    if int(n_sources) != n_sources or n_sources < 1:
        raise ValueError(f"n_sources must be a positive integer, got {n_sources!r}")


def loading_field(rng: np.random.Generator, n_sources: int, n_columns: int, area: int = AREA_COLUMNS,
                  area_share: float = AREA_SHARE, smooth: float = SMOOTH_COLUMNS) -> np.ndarray:
    """Spatially smooth, local source loadings of ``n_columns`` voxel columns: float64 ``(n_sources, n_columns)``.

    The columns are tiled into areas of ``area`` columns (the tiling starts at a random offset); areas take the
    sources in a random cyclic order. Column ``j`` loads ``sqrt(area_share)`` on its area's source plus
    ``sqrt((1 - area_share) / n_sources) * g_jk`` on every source ``k``, where ``g`` is Gaussian noise smoothed
    along the columns to unit variance; the area indicator is smoothed alike, so loadings change smoothly across
    area borders. Each column is scaled to unit norm. Column ``j`` does not depend on ``n_columns`` (a subject's
    columns are a prefix of a longer field drawn from the same generator state).

    Args:
        rng: random generator (consumed).
        n_sources: number of sources ``K``.
        n_columns: number of voxel columns.
        area: columns per area.
        area_share: variance share of the area's own source in each column, in ``[0, 1]``.
        smooth: standard deviation of the Gaussian smoothing in columns (0: none).
    """
    order = rng.permutation(n_sources)
    offset = int(rng.integers(area))
    margin = int(4.0 * smooth + 0.5) + 1 if smooth > 0 else 0  # beyond gaussian_filter1d's kernel radius
    noise = rng.standard_normal((n_columns + margin, n_sources))  # row j: column j, drawn in column order
    home = order[((np.arange(n_columns + margin) + offset) // area) % n_sources]
    indicator = (np.arange(n_sources) == home[:, None]).astype(np.float64)
    if smooth > 0:
        impulse = np.zeros(2 * margin + 1)
        impulse[margin] = 1.0
        gain = np.linalg.norm(gaussian_filter1d(impulse, smooth))  # std of smoothed unit white noise
        noise = gaussian_filter1d(noise, smooth, axis=0) / gain
        indicator = gaussian_filter1d(indicator, smooth, axis=0)
    loadings = np.sqrt(area_share) * indicator + np.sqrt((1.0 - area_share) / n_sources) * noise
    loadings = loadings[:n_columns]
    return (loadings / np.linalg.norm(loadings, axis=1, keepdims=True)).T


@lru_cache(maxsize=4)
def _template_columns(n_columns: int, seed: int, n_sources: int) -> np.ndarray:
    template = loading_field(_rng(seed, SOURCES, 2), n_sources, n_columns)
    template.setflags(write=False)
    return template


def fmri_template(n_voxels: int, seed: int, n_sources: int) -> np.ndarray:
    """The template ``T[:, :n_voxels]`` common to all subjects: float64 ``(n_sources, n_voxels)``, unit columns.

    Read-only: a prefix of a cached template of whole :data:`TEMPLATE_BLOCK` columns (the same numbers as drawing
    ``n_voxels`` columns, :func:`loading_field`).
    """
    _check_sources(n_sources)
    columns = -(-int(n_voxels) // TEMPLATE_BLOCK) * TEMPLATE_BLOCK
    return _template_columns(columns, int(seed), int(n_sources))[:, :n_voxels]


def fmri_mixing(n_voxels: int, seed: int, subject: int, n_sources: int, shared: float) -> np.ndarray:
    """Subject ``subject``'s mixing ``M_s = sqrt(shared) * T + sqrt(1 - shared) * R_s``, unit columns.

    Returns:
        float64 ``(n_sources, n_voxels)``.
    """
    if n_voxels < 1:
        raise ValueError(f"n_voxels must be at least 1, got {n_voxels}")
    check_shared(shared)
    own = loading_field(_rng(seed, FMRI, subject, 2), n_sources, n_voxels)
    mixing = np.sqrt(shared) * fmri_template(n_voxels, seed, n_sources) + np.sqrt(1.0 - shared) * own
    return mixing / np.linalg.norm(mixing, axis=0, keepdims=True)


def fmri_sources(low: np.ndarray, high: np.ndarray, seed: int, n_sources: int) -> np.ndarray:
    """The sources of each stimulus, common to all subjects: float64 ``(N, n_sources)``, standardised per source."""
    _check_sources(n_sources)
    rng = _rng(seed, SOURCES, 1)
    zl, zh = standardize(low), standardize(high)
    s_low = standardize(zl @ rng.standard_normal((zl.shape[1], n_sources)))
    s_high = standardize(zh @ rng.standard_normal((zh.shape[1], n_sources)))
    mix = rng.uniform(0.0, 1.0, size=n_sources)
    return standardize(np.sqrt(mix) * s_low + np.sqrt(1.0 - mix) * s_high)


def fmri_source_signal(low: np.ndarray, high: np.ndarray, n_voxels: int, seed: int, subject: int, n_sources: int,
                       shared: float) -> np.ndarray:
    """Noise-free voxel responses of the source model, each voxel standardised over stimuli: ``(N, n_voxels)``."""
    sources = fmri_sources(low, high, seed, n_sources)
    return standardize(sources @ fmri_mixing(n_voxels, seed, subject, n_sources, shared))


def _ar1(x: np.ndarray, rho: float) -> np.ndarray:
    """Stationary AR(1) along axis 0 with unit variance: ``y_0 = x_0``, ``y_t = rho y_{t-1} + sqrt(1-rho^2) x_t``."""
    if rho == 0:
        return x
    scale = np.sqrt(1.0 - rho**2)
    x = x.copy()
    x[0] /= scale
    return lfilter([scale], [1.0, -rho], x, axis=0)


def fmri_spontaneous_signal(n_samples: int, n_voxels: int, seed: int, subject: int, n_sources: int,
                            shared: float, autocorrelation: float = 0.0) -> np.ndarray:
    """Noise-free spontaneous activity: i.i.d. ``N(0, 1)`` sources per sample through the subject's mixing.

    Args:
        n_samples: number of consecutive samples.
        n_voxels: voxels of the subject.
        seed: random seed.
        subject: subject index (its own mixing part and source draws).
        n_sources: number of sources.
        shared: share of the template in the mixing (:func:`fmri_mixing`).
        autocorrelation: lag-1 correlation of the sources over consecutive samples, in ``[0, 1)``.

    Returns:
        float64 ``(n_samples, n_voxels)``, unit expected variance per voxel.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if not 0.0 <= autocorrelation < 1.0:
        raise ValueError(f"autocorrelation must be in [0, 1), got {autocorrelation}")
    _check_sources(n_sources)
    mixing = fmri_mixing(n_voxels, seed, subject, n_sources, shared)
    sources = _ar1(_rng(seed, FMRI, subject, 3).standard_normal((n_samples, n_sources)), autocorrelation)
    return sources @ mixing


def fmri_spontaneous(n_samples: int, n_voxels: int, snr: float = 1.0, seed: int = 0, subject: int = 0,
                     n_sources: int = 32, shared: float = 0.8, autocorrelation: float = 0.0) -> np.ndarray:
    """Spontaneous ("resting-state") fMRI samples: :func:`fmri_spontaneous_signal` plus Gaussian noise.

    The noise has variance ``1 / snr`` and its draws do not depend on ``snr`` (as in
    :func:`~brain2img.data.simulated.simulator.fmri_responses`).

    Returns:
        float32 ``(n_samples, n_voxels)``.
    """
    _check_snr(snr)
    signal = fmri_spontaneous_signal(n_samples, n_voxels, seed, subject, n_sources, shared, autocorrelation)
    noise = _rng(seed, FMRI, subject, 4).standard_normal(signal.shape)
    return (signal + noise / np.sqrt(snr)).astype(np.float32)


def eeg_spontaneous(n_windows: int, n_channels: int = 32, sfreq: float = 128.0, duration: float = 0.5,
                    snr: float = 1.0, seed: int = 0, subject: int = 0, n_sources: int = 6, shared: float = 0.0,
                    jitter: float = 0.03, feature_dims: tuple[int, int] = FEATURE_DIMS) -> np.ndarray:
    """Spontaneous EEG windows: the subject's sources with random amplitudes and timing, mixed, plus background.

    Args:
        n_windows: number of windows.
        n_channels: number of channels.
        sfreq: sampling frequency in Hz.
        duration: window length in seconds (``n_times = round(sfreq * duration)``).
        snr: variance of the source activity / variance of the background.
        seed: random seed.
        subject: subject index: the same sources (latencies, widths) and mixing as its evoked responses.
        n_sources: number of sources.
        shared: weight of the source model common to all subjects
            (:func:`~brain2img.data.simulated.simulator.eeg_source_model`).
        jitter: standard deviation in seconds of each source's peak time per window.
        feature_dims: low/high-level feature sizes of the stimuli the subject's evoked responses use (their
            projection weights are drawn before the mixing, so they fix which mixing is the subject's).

    Returns:
        float32 ``(n_windows, n_channels, n_times)``.
    """
    _check_snr(snr)
    if n_windows < 1 or n_channels < 1 or sfreq <= 0 or jitter < 0:
        raise ValueError(f"need n_windows >= 1, n_channels >= 1, sfreq > 0 and jitter >= 0, got n_windows="
                         f"{n_windows}, n_channels={n_channels}, sfreq={sfreq}, jitter={jitter}")
    n_times = eeg_times(sfreq, duration)
    (latency, width, _, _, mixing), _ = eeg_source_model(*feature_dims, n_channels, duration, seed, subject,
                                                         n_sources, shared)
    rng = _rng(seed, EEG, subject, 2)
    amplitude = 1.0 + 0.8 * rng.standard_normal((n_windows, n_sources))
    kernels = eeg_time_courses(latency, width, rng.normal(0.0, jitter, (n_windows, n_sources, 1)), n_times, sfreq)
    signal = np.einsum("ck,nk,nkt->nct", mixing, amplitude, kernels)
    return add_eeg_background(signal, snr, sfreq, _rng(seed, EEG, subject, 3))
