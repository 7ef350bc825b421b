"""Optimiser helpers shared by the methods: MAE-style parameter groups and the warm-up + half-cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up from 0, then half-cosine decay to ``min_ratio``.

    The MAE / DreamDiffusion schedule: ``lr(s) = lr * s / w`` for ``s < w``, then
    ``min + (lr - min) * (1 + cos(pi * (s - w) / (E - w))) / 2``, so ``lr(0) = 0``, ``lr(w) = lr``, ``lr(E) = min``.

    Args:
        step: current step (or epoch), from 0.
        warmup_steps: length of the warm-up ``w``.
        total_steps: length of the whole schedule ``E`` (steps past it stay at ``min_ratio``).
        min_ratio: final learning rate as a fraction of the peak.
    """
    if total_steps <= 0 or warmup_steps < 0:
        raise ValueError(f"need total_steps > 0 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                            min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`warmup_cosine_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine_factor(s, warmup_steps, total_steps, min_ratio))


def decay_groups(named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Split trainable parameters into a weight-decay group and a no-decay group (biases, norms, 1-d tensors,
    tokens and positional embeddings), as MAE and DreamDiffusion do."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or "token" in name.split(".")[-1] or name.endswith("pos_embed"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def mae_optimization(named_params: Iterable[tuple[str, nn.Parameter]], total_steps: int, lr: float,
                     weight_decay: float, betas: tuple[float, float], warmup_fraction: float,
                     min_lr_ratio: float = 0.0) -> dict:
    """The MAE / MinD-Vis / DC-MAE recipe as Lightning's ``configure_optimizers`` answer: AdamW over
    :func:`decay_groups` with a per-step warm-up (``ceil(warmup_fraction * total_steps)`` steps) and half-cosine decay.

    Args:
        named_params: ``module.named_parameters()`` (frozen ones are skipped).
        total_steps: optimiser steps of the whole run (``trainer.estimated_stepping_batches``; at least 1 is used).
        lr: peak learning rate.
        weight_decay: AdamW weight decay of the decay group.
        betas: AdamW betas (reference (0.9, 0.95)).
        warmup_fraction: share of the steps spent warming up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
    """
    total = max(1, int(total_steps))
    opt = torch.optim.AdamW(decay_groups(named_params, weight_decay), lr=lr, betas=tuple(betas))
    sched = warmup_cosine_scheduler(opt, int(math.ceil(warmup_fraction * total)), total, min_lr_ratio)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
