"""Stimulus images for the simulated benchmark: real colour photos shipped inside PyPI wheels, expanded by seeded
random crops, flips and colour jitter.

Sources (no download, no pooch): scikit-image ``astronaut``, ``chelsea``, ``coffee``, ``rocket``,
``stereo_motorcycle`` (left and right view), ``hubble_deep_field``, ``immunohistochemistry``, ``retina`` and
scikit-learn ``load_sample_images()`` (``china``, ``flower``): 11 photos. A stimulus's label is the index of its
source photo, which makes an 11-way semantic class for n-way tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

SOURCE_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "china",
    "flower",
)


@dataclass(frozen=True)
class StimulusSet:
    """Stimuli made from the source photos.

    Attributes:
        images: uint8 ``(N, H, W, 3)``.
        labels: int64 ``(N,)``, index of the source photo in ``names``.
        names: the source photo names.
    """

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]


@lru_cache(maxsize=1)
def load_source_photos() -> tuple[np.ndarray, ...]:
    """The 11 source photos as read-only uint8 ``(H, W, 3)`` arrays, in the order of :data:`SOURCE_NAMES`."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    left, right, _ = data.stereo_motorcycle()
    china, flower = load_sample_images().images
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), left, right,
              data.hubble_deep_field(), data.immunohistochemistry(), data.retina(), china, flower]
    out = []
    for name, photo in zip(SOURCE_NAMES, photos, strict=True):
        photo = np.ascontiguousarray(photo[..., :3], dtype=np.uint8)
        if photo.ndim != 3 or photo.shape[-1] != 3:
            raise RuntimeError(f"source photo '{name}' has shape {photo.shape}, expected (H, W, 3)")
        photo.setflags(write=False)
        out.append(photo)
    return tuple(out)


def _random_crop_box(height: int, width: int, scale_range: tuple[float, float], rng: np.random.Generator
                     ) -> tuple[int, int, int, int]:
    """A square-ish crop box ``(left, top, right, bottom)`` covering a random fraction of the photo's area."""
    area = rng.uniform(*scale_range) * height * width
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    w = int(round(np.sqrt(area * aspect)))
    h = int(round(np.sqrt(area / aspect)))
    w, h = max(8, min(w, width)), max(8, min(h, height))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return left, top, left + w, top + h


def _colour_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]``; float in [0, 1]."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    x = image * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = grey + (x - grey) * saturation
    return np.clip(x, 0.0, 1.0)


def make_stimuli(
    n_stimuli: int = 400,
    image_size: int = 64,
    seed: int = 0,
    scale_range: tuple[float, float] = (0.2, 1.0),
    flip_prob: float = 0.5,
    jitter: float = 0.15,
) -> StimulusSet:
    """Expand the source photos into ``n_stimuli`` distinct stimuli (deterministic for a seed).

    Each source photo gets ``n_stimuli // 11`` or one more stimuli (balanced labels, in shuffled order). Each stimulus
    is a random crop of its photo (area fraction drawn from ``scale_range``, aspect ratio 3:4 to 4:3), resized to a
    square ``image_size`` (Lanczos), flipped horizontally with probability ``flip_prob`` and colour-jittered.

    Args:
        n_stimuli: number of stimuli, at least 11 (one per source photo).
        image_size: side of the square output images in pixels, at least 16.
        seed: random seed.
        scale_range: ``(min, max)`` fraction of the photo's area that a crop covers, within ``(0, 1]``.
        flip_prob: probability of a horizontal flip.
        jitter: strength of the brightness / contrast / saturation jitter, in ``[0, 1)``.

    Returns:
        The stimuli, their labels (source index) and the source names.
    """
    n_src = len(SOURCE_NAMES)
    if n_stimuli < n_src:
        raise ValueError(f"n_stimuli must be at least {n_src} (one per source photo), got {n_stimuli}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    lo, hi = scale_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale_range must satisfy 0 < min <= max <= 1, got {scale_range}")
    if not 0 <= flip_prob <= 1:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    photos = load_source_photos()
    labels = rng.permutation(np.arange(n_stimuli) % n_src).astype(np.int64)
    images = np.empty((n_stimuli, image_size, image_size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        photo = photos[label]
        box = _random_crop_box(photo.shape[0], photo.shape[1], (lo, hi), rng)
        crop = Image.fromarray(photo).resize((image_size, image_size), Image.Resampling.LANCZOS, box=box)
        x = np.asarray(crop, dtype=np.float64) / 255.0
        if rng.random() < flip_prob:
            x = x[:, ::-1]
        x = _colour_jitter(x, jitter, rng)
        images[i] = np.round(x * 255.0).astype(np.uint8)
    return StimulusSet(images=images, labels=labels, names=SOURCE_NAMES)
