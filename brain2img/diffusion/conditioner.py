"""Map any encoder output (a vector or tokens) to the cross-attention tokens of the latent-diffusion UNet."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

MODES = ("linear", "identity")


class Conditioner(nn.Module):
    """Turn a condition ``c`` into cross-attention tokens ``(B, L, D)`` and a pooled vector ``(B, D)``.

    Two modes:

    - ``linear`` (tiny generator): ``c`` of shape ``(B, *input_shape)`` (or already flat, ``(B, prod(input_shape))``)
      is layer-normalised (so a ridge prediction with shrunken scale still conditions well), then a learned
      two-layer map gives ``n_tokens`` tokens of width ``token_dim``.
    - ``identity`` (Stable Diffusion): ``c`` is already the ``(L, D)`` embedding, flat or not; it is only reshaped.

    The pooled vector is the mean of the tokens.

    Args:
        input_shape: shape of one condition, ``(d_in,)`` for a vector or ``(L_in, d_in)`` for tokens.
        n_tokens: number of output tokens ``L``.
        token_dim: width ``D`` of each token (the UNet's ``cross_attention_dim``).
        mode: ``"linear"`` or ``"identity"``.
        hidden_dim: width of the hidden layer of the ``linear`` map.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_tokens: int,
        token_dim: int,
        mode: str = "linear",
        hidden_dim: int = 512,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Conditioner mode must be one of {MODES}, got {mode!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"Conditioner input_shape must be non-empty positive sizes, got {self.input_shape}")
        self.n_tokens = int(n_tokens)
        self.token_dim = int(token_dim)
        self.mode = mode
        if mode == "identity":
            if self.condition_dim != self.n_tokens * self.token_dim:
                raise ValueError(
                    f"identity Conditioner needs prod(input_shape) = n_tokens * token_dim, got input_shape "
                    f"{self.input_shape} for {self.n_tokens} tokens of width {self.token_dim}"
                )
            self.net = None
        else:
            self.net = nn.Sequential(
                nn.LayerNorm(self.condition_dim),
                nn.Linear(self.condition_dim, hidden_dim),
                nn.GELU(),
                nn.Linear(hidden_dim, self.n_tokens * self.token_dim),
            )

    @property
    def condition_dim(self) -> int:
        """Number of values in one (flattened) condition."""
        return math.prod(self.input_shape)

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled vector."""
        return self.token_dim

    def _flatten(self, c: torch.Tensor) -> torch.Tensor:
        if c.ndim >= 2 and tuple(c.shape[1:]) == self.input_shape:
            return c.reshape(len(c), -1)
        if c.ndim == 2 and c.shape[1] == self.condition_dim:
            return c
        raise ValueError(
            f"condition must have shape (B, {', '.join(map(str, self.input_shape))}) or (B, {self.condition_dim}), "
            f"got {tuple(c.shape)}"
        )

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``c`` to ``(tokens (B, n_tokens, token_dim), pooled (B, token_dim))``."""
        flat = self._flatten(c)
        if self.net is None:
            tokens = flat.reshape(len(flat), self.n_tokens, self.token_dim)
        else:
            tokens = self.net(flat).reshape(len(flat), self.n_tokens, self.token_dim)
        return tokens, tokens.mean(dim=1)
