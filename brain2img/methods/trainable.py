"""Explicit choice of which parameters train: named groups of modules, never a loose name match.

The DreamDiffusion reference selects UNet parameters whose *name contains* ``attn2``, ``norm2`` or
``time_embed_condtion``; the substring ``norm2`` also matches ``layer_norm2`` of the "frozen" CLIP tower, which is
therefore updated by accident. Here each group is found by module type (diffusers ``BasicTransformerBlock``'s
``attn2`` and ``norm2``) and the caller lists the groups to train by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from diffusers.models.attention import BasicTransformerBlock
from torch import nn

FIXED = ("pos_embed", "decoder_pos_embed")  # fixed sin-cos positional embeddings stored as parameters: never trained


def unet_cross_attention(unet: nn.Module) -> list[nn.Module]:
    """The cross-attention layers (``attn2``) and the norms before them (``norm2``) of every transformer block."""
    found: list[nn.Module] = []
    for block in unet.modules():
        if isinstance(block, BasicTransformerBlock) and block.attn2 is not None:
            found.append(block.attn2)
            if block.norm2 is not None:
                found.append(block.norm2)
    return found


def select_trainable(root: nn.Module, groups: dict[str, Iterable[nn.Module]], names: Sequence[str]) -> int:
    """Freeze every parameter of ``root``, then unfreeze the modules of the named groups.

    Args:
        root: the module that owns all parameters (the LightningModule).
        groups: group name -> modules of that group.
        names: groups to train.

    Returns:
        The number of trainable parameters.

    Raises:
        ValueError: an unknown group name, or a named group that has no parameters.
    """
    unknown = [n for n in names if n not in groups]
    if unknown:
        raise ValueError(f"unknown trainable group(s) {unknown} (model.trainable); choose from {sorted(groups)}")
    root.requires_grad_(False)
    for name in names:
        named = [(n, p) for m in groups[name] for n, p in m.named_parameters()]
        if not named:
            raise ValueError(f"trainable group '{name}' has no parameters in this model (model.trainable)")
        for param_name, p in named:
            if param_name.rsplit(".", 1)[-1] not in FIXED:
                p.requires_grad_(True)
    return sum(p.numel() for p in root.parameters() if p.requires_grad)
