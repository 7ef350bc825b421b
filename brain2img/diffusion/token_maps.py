"""Maps from a brain encoder's token sequence ``(B, L_in, D_in)`` to what the diffusion UNet consumes.

These are DreamDiffusion's / MinD-Vis's conditioning heads, usable with any token encoder:

- :class:`TokenMapper` (``channel_mapper`` + ``dim_mapper``): ``(B, L_in, D_in) -> (B, L_out, D_out)``
  cross-attention tokens, e.g. 128 EEG tokens of width 1024 -> SD's 77 x 768.
- :class:`TokenTimeCondition` (``time_embed_condtion``): tokens -> one vector added to the UNet's timestep
  embedding ("double conditioning"); plugs into a diffusers UNet as its ``class_embedding``.
- :class:`TokenPooler` (the CLIP-alignment ``mapping``): tokens -> one embedding ``(B, D_out)``.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_tokens(x: torch.Tensor, n_tokens: int, dim: int, owner: str) -> None:
    if x.ndim != 3 or tuple(x.shape[1:]) != (n_tokens, dim):
        raise ValueError(f"{owner} expects tokens of shape (B, {n_tokens}, {dim}), got {tuple(x.shape)}")


class TokenMapper(nn.Module):
    """Mix tokens with two 1x1 convolutions over the token axis (``L_in -> L_in // 2 -> L_out``), then map their
    width with a linear layer (``D_in -> D_out``); no nonlinearity, as the reference.

    Args:
        n_in: input tokens ``L_in``.
        in_dim: input width ``D_in``.
        n_out: output tokens ``L_out`` (SD: 77).
        out_dim: output width ``D_out`` (the UNet's ``cross_attention_dim``; SD: 768).
    """

    def __init__(self, n_in: int, in_dim: int, n_out: int, out_dim: int) -> None:
        super().__init__()
        self.n_in, self.in_dim, self.n_out, self.out_dim = n_in, in_dim, n_out, out_dim
        hidden = max(1, n_in // 2)
        self.channel_mapper = nn.Sequential(nn.Conv1d(n_in, hidden, 1), nn.Conv1d(hidden, n_out, 1))
        self.dim_mapper = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L_in, D_in) -> (B, L_out, D_out)``."""
        _check_tokens(x, self.n_in, self.in_dim, type(self).__name__)
        return self.dim_mapper(self.channel_mapper(x))


class TokenTimeCondition(nn.Module):
    """Condition tokens -> a vector added to the timestep embedding (1x1 convs ``L -> L // 2 -> 1``, then linear).

    Set as a diffusers UNet's ``class_embedding``; the backbone passes it the tokens themselves
    (``takes_tokens = True``) rather than a pooled vector.

    Args:
        n_tokens: condition tokens ``L`` (SD: 77).
        token_dim: token width (SD: 768).
        time_embed_dim: the UNet's timestep-embedding width (SD: 1280).
    """

    takes_tokens = True

    def __init__(self, n_tokens: int, token_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        self.n_tokens, self.token_dim = n_tokens, token_dim
        self.token_mixer = nn.Sequential(nn.Conv1d(n_tokens, max(1, n_tokens // 2), 1),
                                         nn.Conv1d(max(1, n_tokens // 2), 1, 1))
        self.proj = nn.Linear(token_dim, time_embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, time_embed_dim)``."""
        _check_tokens(tokens, self.n_tokens, self.token_dim, type(self).__name__)
        return self.proj(self.token_mixer(tokens)).squeeze(1)


class TokenPooler(nn.Module):
    """Tokens -> one embedding: a 1x1 conv over the token axis (``L -> 1``), then a linear map of the width.

    Args:
        n_tokens: input tokens ``L``.
        in_dim: input width.
        out_dim: embedding width (CLIP ViT-L/14 image embeddings: 768).
    """

    def __init__(self, n_tokens: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.n_tokens, self.in_dim = n_tokens, in_dim
        self.token_pool = nn.Conv1d(n_tokens, 1, 1)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D_in) -> (B, D_out)``."""
        _check_tokens(x, self.n_tokens, self.in_dim, type(self).__name__)
        return self.proj(self.token_pool(x).squeeze(1))
