"""Fixed 1-D sine-cosine positional embeddings (MAE / DreamDiffusion layout: ``[sin | cos]``, optional zero CLS row)."""

from __future__ import annotations

import torch


def get_1d_sincos_pos_embed(dim: int, length: int, cls_token: bool = False) -> torch.Tensor:
    """Sine-cosine embedding of the positions ``0 .. length - 1``.

    Row ``p`` is ``[sin(p * omega) | cos(p * omega)]`` with ``omega_i = 10000 ** (-2 i / dim)`` for ``i < dim / 2``.
    The values are computed in float64 and returned as float32.

    Args:
        dim: embedding width; must be even and positive.
        length: number of positions; must be positive.
        cls_token: prepend an all-zero row for a CLS token.

    Returns:
        Tensor of shape ``(length, dim)``, or ``(length + 1, dim)`` with ``cls_token``.

    Raises:
        ValueError: when ``dim`` is odd or not positive, or ``length`` is not positive.
    """
    if dim <= 0 or dim % 2 != 0:
        raise ValueError(f"get_1d_sincos_pos_embed: 'dim' must be a positive even integer, got {dim}")
    if length <= 0:
        raise ValueError(f"get_1d_sincos_pos_embed: 'length' must be a positive integer, got {length}")
    half = dim // 2
    omega = 1.0 / 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], dim=0)
    return emb.to(torch.float32)
