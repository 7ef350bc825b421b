"""Image augmentation used while training on stimuli (batched, seeded, on any device)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_crop(p: float, fraction: float) -> None:
    """Raise ``ValueError`` unless ``0 <= p <= 1`` and ``0 < fraction <= 1``."""
    if not 0.0 <= p <= 1.0 or not 0.0 < fraction <= 1.0:
        raise ValueError(f"random_crop_resize needs 0 <= p <= 1 and 0 < fraction <= 1, got p={p}, "
                         f"fraction={fraction}")


def random_crop_resize(images: torch.Tensor, p: float, fraction: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` per image, crop a random square of ``fraction`` of the side and resize it back.

    DreamDiffusion's fine-tuning augmentation (``Resize 512 -> RandomCrop 410 with p 0.5 -> Resize 512``, i.e.
    ``fraction`` = 410 / 512 = 0.8). Resizing is bilinear with antialiasing off (upsampling).

    Args:
        images: ``(B, C, H, W)``.
        p: probability that an image is cropped (0 returns ``images`` unchanged).
        fraction: side of the crop relative to the image side, in (0, 1].
        generator: seeds which images are cropped and where (on the images' device, or the CPU).

    Returns:
        Augmented images, same shape and dtype.
    """
    check_crop(p, fraction)
    if images.ndim != 4:
        raise ValueError(f"random_crop_resize expects (B, C, H, W) images, got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    if p == 0.0 or (ch, cw) == (h, w):
        return images
    dev = generator.device if generator is not None else images.device
    chosen = torch.rand(b, generator=generator, device=dev) < p
    tops = torch.randint(0, h - ch + 1, (b,), generator=generator, device=dev)
    lefts = torch.randint(0, w - cw + 1, (b,), generator=generator, device=dev)
    out = images.clone()
    for k in torch.nonzero(chosen).flatten().tolist():
        top, left = int(tops[k]), int(lefts[k])
        crop = images[k : k + 1, :, top : top + ch, left : left + cw]
        out[k] = F.interpolate(crop.float(), size=(h, w), mode="bilinear", align_corners=False)[0].to(images.dtype)
    return out
