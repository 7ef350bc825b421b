"""Pre-norm ViT transformer block (the timm ``Block`` layout used by MAE, MinD-Vis and DreamDiffusion).

Sub-module names follow timm (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``) so that
reference checkpoints map key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output projection.

    Args:
        dim: token width.
        num_heads: number of heads; must divide ``dim``.
        qkv_bias: add a bias to the ``qkv`` projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Attention: 'num_heads' ({num_heads}) must divide 'dim' ({dim})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the tokens of ``x`` ``(B, N, dim)``; returns ``(B, N, dim)``."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two linear layers with a GELU between them: ``dim -> hidden -> dim``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Args:
        dim: token width.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: MLP hidden width is ``int(dim * mlp_ratio)`` (timm's rule).
        qkv_bias: add a bias to the ``qkv`` projection.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        if hidden <= 0:
            raise ValueError(f"TransformerBlock: 'mlp_ratio' ({mlp_ratio}) gives an empty MLP for dim {dim}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(B, N, dim)`` tokens."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
