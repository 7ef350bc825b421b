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


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` ``(B, N, dim)`` over a context ``(B, M, dim)`` (``q`` from ``x``,
    ``k``/``v`` from the context), with an output projection.

    Args:
        dim: token width of queries and context.
        num_heads: number of heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"CrossAttention: 'num_heads' ({num_heads}) must divide 'dim' ({dim})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attend from ``x`` ``(B, N, dim)`` over ``context`` ``(B, M, dim)``; returns ``(B, N, dim)``."""
        b, n, d = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttentionBlock(nn.Module):
    """A pre-norm cross-attention layer (DC-MAE's cross ``ViTMAELayer``): ``x + attn(norm1(x), norm_context(c))``
    then ``x + mlp(norm2(x))``.

    Args:
        dim: token width of queries and context.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``dim`` (ViT-MAE-base: 3072 / 768 = 4).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        if hidden <= 0:
            raise ValueError(f"CrossAttentionBlock: 'mlp_ratio' ({mlp_ratio}) gives an empty MLP for dim {dim}")
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Queries ``(B, N, dim)`` attend over ``context`` ``(B, M, dim)``."""
        x = x + self.attn(self.norm1(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class CrossStack(nn.Module):
    """DC-MAE's cross-modal adapter: ``Linear(in_dim -> dim)``, ``depth`` :class:`CrossAttentionBlock` over a context
    of width ``dim``, a residual around them, and ``Linear(dim -> out_dim)`` (``cross_map_in`` / ``cross_blocks`` /
    ``cross_map_out`` on the fMRI side; ``out_dim = in_dim``).

    Args:
        in_dim: width of the tokens coming in.
        dim: width of the cross blocks and of the context.
        out_dim: width of the tokens going out.
        depth: cross blocks (reference 3).
        num_heads: heads of each block.
    """

    def __init__(self, in_dim: int, dim: int, out_dim: int, depth: int = 3, num_heads: int = 12) -> None:
        super().__init__()
        self.map_in = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, num_heads) for _ in range(depth))
        self.map_out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``(B, N, in_dim)`` tokens attending over ``(B, M, dim)`` context -> ``(B, N, out_dim)``."""
        x = self.map_in(x)
        h = x
        for block in self.blocks:
            h = block(h, context)
        return self.map_out(x + h)
