"""MindEye's training schedules: OneCycle length and wrapper, the BiMixCo epoch cut and the SoftCLIP temperatures.

MindEye1 (``Train_MindEye.py``) trains 240 epochs of ``8859 // 32 = 276`` batches with OneCycleLR
(``max_lr = 3e-4``, ``pct_start = 2 / 240``, ``final_div_factor = 1000``), uses BiMixCo for the first
``int(0.33 * 240) = 79`` epochs, then SoftCLIP with a temperature that follows a half-cosine from 0.004 to 0.0075
over the remaining 161 epochs.
"""

from __future__ import annotations

import math

import torch


def _check_positive_int(value: int, name: str, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: '{name}' must be a positive integer, got {value!r}")


def _check_fraction(value: float, name: str, owner: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: '{name}' must be in [0, 1], got {value!r}")


def onecycle_total_steps(num_epochs: int = 240, n_train: int = 8859, batch_size: int = 32) -> int:
    """OneCycle length in optimiser steps: ``num_epochs * (n_train // batch_size)`` (MindEye1: 240 * 276 = 66,240).

    Args:
        num_epochs: training epochs.
        n_train: training samples per epoch (MindEye1: 8559 train + 300 val = 8859).
        batch_size: samples per step; a last partial batch is dropped, as MindEye does.

    Raises:
        ValueError: for non-positive arguments or ``batch_size > n_train`` (an epoch of zero steps).
    """
    for name, value in (("num_epochs", num_epochs), ("n_train", n_train), ("batch_size", batch_size)):
        _check_positive_int(value, name, "onecycle_total_steps")
    if batch_size > n_train:
        raise ValueError(f"onecycle_total_steps: 'batch_size' ({batch_size}) exceeds 'n_train' ({n_train})")
    return num_epochs * (n_train // batch_size)


def bimixco_epochs(num_epochs: int = 240, mixup_pct: float = 0.33) -> int:
    """Number of leading epochs trained with BiMixCo: ``int(mixup_pct * num_epochs)`` (MindEye1: 79 of 240).

    Epoch ``e`` (from 0) uses BiMixCo when ``e < bimixco_epochs(...)`` and SoftCLIP otherwise.
    """
    _check_positive_int(num_epochs, "num_epochs", "bimixco_epochs")
    _check_fraction(mixup_pct, "mixup_pct", "bimixco_epochs")
    return int(mixup_pct * num_epochs)


def softclip_temperatures(
    num_epochs: int = 240, mixup_pct: float = 0.33, start: float = 0.004, end: float = 0.0075
) -> torch.Tensor:
    """SoftCLIP temperature for each SoftCLIP epoch (MindEye's ``cosine_anneal(start, end, n)``).

    With ``n = num_epochs - bimixco_epochs(num_epochs, mixup_pct)`` (161 for MindEye1), the temperature of SoftCLIP
    epoch ``k`` is ``end + (start - end) / 2 * (1 + cos(pi * k / (n - 1)))``: ``start`` at ``k = 0``, ``end`` at
    ``k = n - 1``, monotone in between. Index it with ``epoch - bimixco_epochs(...)``.

    Args:
        num_epochs: all training epochs.
        mixup_pct: fraction of epochs trained with BiMixCo.
        start: first temperature.
        end: last temperature.

    Returns:
        ``(n,)`` float64 tensor (``[start]`` when ``n == 1``).

    Raises:
        ValueError: for non-positive temperatures or when no epoch is left for SoftCLIP.
    """
    if not (start > 0 and end > 0):
        raise ValueError(f"softclip_temperatures: 'start' and 'end' must be > 0, got {start!r} and {end!r}")
    n = num_epochs - bimixco_epochs(num_epochs, mixup_pct)
    if n < 1:
        raise ValueError(
            f"softclip_temperatures: no SoftCLIP epoch left (num_epochs={num_epochs}, mixup_pct={mixup_pct})"
        )
    if n == 1:
        return torch.tensor([start], dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    return end + (start - end) / 2 * (1 + torch.cos(math.pi * k / (n - 1)))


def make_onecycle(
    optimizer: torch.optim.Optimizer,
    *,
    max_lr: float = 3e-4,
    total_steps: int,
    pct_start: float = 2 / 240,
    final_div_factor: float = 1000.0,
    div_factor: float = 25.0,
    cycle_momentum: bool = True,
) -> torch.optim.lr_scheduler.OneCycleLR:
    """MindEye's per-step :class:`~torch.optim.lr_scheduler.OneCycleLR` (cosine annealing).

    The learning rate starts at ``max_lr / div_factor`` (1.2e-5), rises to ``max_lr`` over the first
    ``pct_start * total_steps`` steps and falls to ``max_lr / div_factor / final_div_factor``; with
    ``cycle_momentum`` (PyTorch's default, kept by MindEye) AdamW's beta1 cycles between 0.85 and 0.95.

    Args:
        optimizer: the optimiser to schedule (its learning rates are overwritten).
        max_lr: peak learning rate.
        total_steps: steps in the whole schedule (see :func:`onecycle_total_steps`).
        pct_start: fraction of steps spent warming up (MindEye1: 2 / 240, i.e. two epochs).
        final_div_factor: ratio between the initial and the final learning rate.
        div_factor: ratio between ``max_lr`` and the initial learning rate.
        cycle_momentum: cycle the momentum / beta1 inversely to the learning rate.
    """
    _check_positive_int(total_steps, "total_steps", "make_onecycle")
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"make_onecycle: 'pct_start' must be in (0, 1), got {pct_start!r}")
    if not max_lr > 0:
        raise ValueError(f"make_onecycle: 'max_lr' must be > 0, got {max_lr!r}")
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        final_div_factor=final_div_factor,
        div_factor=div_factor,
        anneal_strategy="cos",
        cycle_momentum=cycle_momentum,
    )
