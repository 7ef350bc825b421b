"""Low-level image similarity: PixCorr and SSIM with the MindEye preprocessing (resize to 425, bilinear)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from brain2img.metrics._dedup import IdDeduplicatedMetric, check_ids

GRAY_COEFFS = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage / scipy.ndimage default: kernel radius int(3.5 * 1.5 + 0.5) = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_CHUNK = 16  # images scored at once (bounds float64 memory at 425 px)


def _check_images(images: Tensor, name: str, owner: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{owner}.update: `{name}` must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise TypeError(f"{owner}.update: `{name}` must be a float tensor in [0, 1], got dtype {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{owner}.update: `{name}` must lie in [0, 1] (clamp first), got range [{lo:.4g}, {hi:.4g}]")


def resize_images(images: Tensor, size: int | None) -> Tensor:
    """Float64 copy of ``(B, 3, H, W)`` images, resized to ``size x size`` (bilinear, half-pixel, no antialias)."""
    images = images.to(torch.float64)
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def pixcorr_scores(gt: Tensor, rec: Tensor) -> Tensor:
    """Per-image Pearson correlation of the flattened RGB pixels of two equally sized image batches."""
    a = gt.flatten(1)
    b = rec.flatten(1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def rgb_to_gray(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, H, W)`` with the ``skimage.color.rgb2gray`` luminance weights."""
    weights = torch.tensor(GRAY_COEFFS, dtype=images.dtype, device=images.device)
    return torch.einsum("bchw,c->bhw", images, weights)


def _gaussian_valid(x: Tensor, sigma: float) -> Tensor:
    """Separable gaussian filter of ``(N, H, W)`` maps, keeping only pixels whose window lies inside the image.

    That region is exactly what ``structural_similarity`` averages after cropping ``radius`` pixels per border, so
    no padding mode is needed. Each pass is a sum of shifted slices, fast in float64 on any device.
    """
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    width, height = x.shape[-1] - 2 * radius, x.shape[-2] - 2 * radius
    x = sum(w * x[..., k : k + width] for k, w in enumerate(kernel))  # along W: (N, H, W - 2r)
    return sum(w * x[..., k : k + height, :] for k, w in enumerate(kernel))  # along H: (N, H - 2r, W - 2r)


def ssim_scores(gt_gray: Tensor, rec_gray: Tensor, sigma: float = SSIM_SIGMA, data_range: float = 1.0) -> Tensor:
    """Per-image mean SSIM of ``(B, H, W)`` grayscale images.

    Matches ``skimage.metrics.structural_similarity(rec, gt, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range)``.
    """
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    if min(gt_gray.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"SSIM: images must be at least {2 * radius + 1} pixels a side, got {tuple(gt_gray.shape)}")
    b = gt_gray.shape[0]
    x, y = gt_gray, rec_gray
    stats = _gaussian_valid(torch.cat([x, y, x * x, y * y, x * y]), sigma)
    ux, uy, uxx, uyy, uxy = stats.split(b)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return ssim_map.flatten(1).mean(dim=1)


class _ImageSimilarity(IdDeduplicatedMetric):
    """Per-image score computed at update time; value = mean over de-duplicated images."""

    _owner = "ImageSimilarity"

    def __init__(self, resize: int | None = 425, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if resize is not None and resize < 1:
            raise ValueError(f"{self._owner}: `resize` must be a positive size or None, got {resize}")
        self.resize = resize
        self._add_row_states("scores")

    def update(self, gt_images: Tensor, rec_images: Tensor, ids: Tensor) -> None:
        """Score a batch.

        Args:
            gt_images: ``(B, 3, H, W)`` ground-truth images in ``[0, 1]``.
            rec_images: ``(B, 3, H', W')`` reconstructions in ``[0, 1]`` (any size: both are resized).
            ids: ``(B,)`` integer sample ids.
        """
        _check_images(gt_images, "gt_images", self._owner)
        _check_images(rec_images, "rec_images", self._owner)
        if gt_images.shape[0] != rec_images.shape[0]:
            raise ValueError(f"{self._owner}.update: batch sizes differ: {gt_images.shape[0]} vs {rec_images.shape[0]}")
        if self.resize is None and gt_images.shape != rec_images.shape:
            raise ValueError(
                f"{self._owner}.update: with resize=None the images must have the same size, got "
                f"{tuple(gt_images.shape)} and {tuple(rec_images.shape)}"
            )
        ids = check_ids(ids, gt_images.shape[0], self._owner)
        scores = [
            self._score(resize_images(gt_images[i : i + _CHUNK], self.resize), resize_images(rec, self.resize))
            for i, rec in zip(range(0, len(rec_images), _CHUNK), rec_images.split(_CHUNK), strict=True)
        ]
        self._append_rows(ids, scores=torch.cat(scores))

    def _score(self, gt: Tensor, rec: Tensor) -> Tensor:
        raise NotImplementedError

    def compute(self) -> Tensor:
        """Mean score over the de-duplicated images."""
        return self._rows()[1]["scores"].mean()

    def per_sample(self) -> Tensor:
        """Per-image scores, ordered by ascending sample id (see :meth:`sample_ids`)."""
        return self._synced(lambda: self._rows()[1]["scores"])


class PixCorr(_ImageSimilarity):
    """Pixel correlation (MindEye / Brain-Diffuser): per-image Pearson r of the flattened RGB pixels, mean.

    Both images are resized to ``resize x resize`` first (bilinear, as MindEye's ``transforms.Resize(425)``).

    Args:
        resize: side length both images are resized to; ``None`` keeps them (then they must match in size).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    _owner = "PixCorr"
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def _score(self, gt: Tensor, rec: Tensor) -> Tensor:
        return pixcorr_scores(gt, rec)


class SSIM(_ImageSimilarity):
    """Structural similarity with the MindEye preprocessing, mean over images.

    Resize to ``resize x resize`` (bilinear), convert to grayscale with the ``skimage.color.rgb2gray`` weights, then
    SSIM with gaussian weights (sigma 1.5, 11 x 11 window), population covariance and ``data_range=1``; each image's
    SSIM map is averaged over the pixels whose window fits inside the image, as in
    ``skimage.metrics.structural_similarity``.

    Args:
        resize: side length both images are resized to; ``None`` keeps them (then they must match in size).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    _owner = "SSIM"
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def _score(self, gt: Tensor, rec: Tensor) -> Tensor:
        return ssim_scores(rgb_to_gray(gt), rgb_to_gray(rec))
