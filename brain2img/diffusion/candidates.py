"""Several samples per input and best-of-k selection: the candidates a method draws and the one it keeps.

MindEye keeps, of 16 img2img samples, the one whose CLIP image tokens are closest to the brain's projected tokens;
DreamDiffusion can keep the sample whose CLIP embedding is closest to the EEG's projected embedding. Both are
:func:`sample_candidates` then :func:`best_of_k` with the method's own image encoder and reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def sample_candidates(backbone: nn.Module, condition: torch.Tensor, num_samples: int, **sample_kwargs: Any
                      ) -> list[torch.Tensor]:
    """``num_samples`` decoded images ``(B, 3, H, W)`` per input from ``backbone.sample(condition, **sample_kwargs)``,
    drawn one after another from the same random generator (so sample ``j`` is the same with any ``num_samples``).

    Raises:
        ValueError: ``num_samples < 1``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return [backbone.decode_latents(backbone.sample(condition, **sample_kwargs)) for _ in range(num_samples)]


@torch.no_grad()
def best_of_k(candidates: list[torch.Tensor], embed: Callable[[torch.Tensor], torch.Tensor],
              reference: torch.Tensor) -> torch.Tensor:
    """Per input, the candidate whose embedding has the highest cosine similarity with ``reference``.

    Args:
        candidates: ``k`` tensors ``(B, 3, H, W)``; with one candidate it is returned as it is (nothing embedded).
        embed: images ``(N, 3, H, W)`` -> embeddings ``(N, ...)`` (flattened per image).
        reference: ``(B, ...)``, flattened per input, compared with each candidate's embedding.

    Returns:
        ``(B, 3, H, W)``.
    """
    if len(candidates) == 1:
        return candidates[0]
    stacked = torch.stack(candidates, dim=1)  # (B, k, 3, H, W)
    b, k = stacked.shape[:2]
    emb = embed(stacked.flatten(0, 1)).float().reshape(b, k, -1)
    best = F.cosine_similarity(emb, reference.float().reshape(b, 1, -1), dim=-1).argmax(dim=1)
    return stacked[torch.arange(b, device=best.device), best]
