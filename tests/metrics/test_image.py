"""PixCorr and SSIM against NumPy corrcoef and scikit-image (resize, rgb2gray, structural_similarity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from skimage.transform import resize

from brain2img.metrics import SSIM, PixCorr


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth-ish random images in [0, 1], (n, 3, size, size)."""
    base = rng.random((n, 3, size // 4, size // 4))
    up = np.stack([resize(b.transpose(1, 2, 0), (size, size), order=3).transpose(2, 0, 1) for b in base])
    return np.clip(up + 0.05 * rng.standard_normal(up.shape), 0.0, 1.0)


def _resize_ref(img: np.ndarray, size: int) -> np.ndarray:
    """(3, H, W) -> (size, size, 3): bilinear, half-pixel centres, edge clamping, no antialias (= torch bilinear)."""
    return resize(img.transpose(1, 2, 0), (size, size), order=1, mode="edge", anti_aliasing=False)


def _references(gt: np.ndarray, rec: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    pix, ssim = [], []
    for g, r in zip(gt, rec, strict=True):
        g = _resize_ref(g, size) if size else g.transpose(1, 2, 0)
        r = _resize_ref(r, size) if size else r.transpose(1, 2, 0)
        pix.append(np.corrcoef(g.reshape(-1), r.reshape(-1))[0, 1])
        ssim.append(
            structural_similarity(
                rgb2gray(r), rgb2gray(g), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
            )
        )
    return np.array(pix), np.array(ssim)


@pytest.mark.parametrize(("gt_size", "rec_size", "resize_to"), [(64, 96, 425), (48, 48, None), (120, 120, 57)])
def test_pixcorr_and_ssim_match_references(gt_size: int, rec_size: int, resize_to: int | None) -> None:
    rng = np.random.default_rng(0)
    gt = _images(rng, 5, gt_size)
    rec = _images(rng, 5, rec_size)
    if rec_size == gt_size:
        rec = np.clip(0.6 * gt + 0.4 * rec, 0, 1)  # correlated pairs
    ids = np.array([4, 0, 3, 1, 2])
    pixcorr, ssim = PixCorr(resize=resize_to), SSIM(resize=resize_to)
    for sl in (slice(0, 2), slice(2, 5)):
        args = (torch.from_numpy(gt[sl]).float(), torch.from_numpy(rec[sl]).float(), torch.from_numpy(ids[sl]))
        pixcorr.update(*args)
        ssim.update(*args)
    gt32, rec32 = gt.astype(np.float32).astype(np.float64), rec.astype(np.float32).astype(np.float64)
    ref_pix, ref_ssim = _references(gt32, rec32, resize_to)
    order = np.argsort(ids)
    np.testing.assert_allclose(pixcorr.per_sample().numpy(), ref_pix[order], atol=1e-4)
    np.testing.assert_allclose(ssim.per_sample().numpy(), ref_ssim[order], atol=1e-4)
    assert float(pixcorr.compute()) == pytest.approx(ref_pix.mean(), abs=1e-4)
    assert float(ssim.compute()) == pytest.approx(ref_ssim.mean(), abs=1e-4)
    assert np.ptp(ref_ssim) > 1e-3  # the images differ enough for the comparison to mean something


def test_identical_images_score_one_and_duplicates_are_ignored() -> None:
    rng = np.random.default_rng(1)
    img = torch.from_numpy(_images(rng, 3, 32)).float()
    other = torch.from_numpy(_images(rng, 3, 32)).float()
    for metric_cls in (PixCorr, SSIM):
        same = metric_cls(resize=64)
        same.update(img, img, torch.arange(3))
        assert float(same.compute()) == pytest.approx(1.0, abs=1e-9)
        once, twice = metric_cls(resize=None), metric_cls(resize=None)
        once.update(img, other, torch.arange(3))
        twice.update(img[[2, 0]], other[[2, 0]], torch.tensor([2, 0]))
        twice.update(img, other, torch.arange(3))
        assert float(twice.compute()) == float(once.compute())


def test_image_metrics_validate_input() -> None:
    img = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PixCorr().update(img * 2, img, torch.arange(2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        SSIM().update(img[:, :1], img[:, :1], torch.arange(2))
    with pytest.raises(ValueError, match="same size"):
        SSIM(resize=None).update(img, torch.rand(2, 3, 20, 20), torch.arange(2))
    with pytest.raises(ValueError, match="at least 11"):
        SSIM(resize=8).update(img, img, torch.arange(2))
