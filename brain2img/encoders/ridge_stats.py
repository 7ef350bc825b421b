"""Closed-form ridge algebra on sufficient statistics (no data): centring, scaling, eigen-solves, held-out SSE.

Every function works on one set of sums over samples, a :class:`Moments`: the count ``n``, ``sx = Σx`` (p),
``sy = Σy`` (t), ``xtx = Σxxᵀ`` (p, p), ``xty = Σxyᵀ`` (p, t) and ``syy = Σy²`` (t). Moments add, so the training part
of a cross-validation fold is ``total - fold`` and the statistics of several processes are their sum.

The regression is ``y ≈ ((x - cx) / s) W + cy``: ``cx`` and ``cy`` are offsets (training means, or zero) and ``s``
the feature scale (training standard deviation with ddof 0, or one). Centred moments around any offsets follow
exactly from the raw sums, e.g. ``Σ(x - cx)(y - cy)ᵀ = xty - cx syᵀ - sx cyᵀ + n cx cyᵀ``.

Two precisions may be mixed: the x-side sums (``sx``, ``xtx``), the eigendecomposition and the alphas in a "Gram"
dtype (float64 by default), the large y-side sums (``xty`` (p, t), ``sy``, ``syy``) and everything of size t in the
"target" dtype. The eigenvalues decide which directions survive, so they need the precision; the (p, t) products do
not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Moments:
    """Raw sums over a set of samples (see the module docstring)."""

    n: torch.Tensor
    sx: torch.Tensor
    sy: torch.Tensor
    xtx: torch.Tensor
    xty: torch.Tensor
    syy: torch.Tensor

    def __sub__(self, other: Moments) -> Moments:
        return Moments(*(a - b for a, b in zip(self._parts(), other._parts(), strict=True)))

    def _parts(self) -> tuple[torch.Tensor, ...]:
        return self.n, self.sx, self.sy, self.xtx, self.xty, self.syy


@dataclass(frozen=True)
class Offsets:
    """Offsets and scale of one fit: ``z = (x - cx) / s``, target ``y - cy``."""

    cx: torch.Tensor
    cy: torch.Tensor
    s: torch.Tensor


def offsets_from(m: Moments, fit_intercept: bool, standardize: bool) -> Offsets:
    """Offsets of a fit on the samples summed in ``m``.

    ``standardize`` centres and scales x like ``sklearn.preprocessing.StandardScaler`` (ddof 0; a constant feature
    keeps scale 1); ``fit_intercept`` centres x and y like ``sklearn.linear_model.Ridge``. With ``standardize`` and
    no ``fit_intercept``, x is centred but y is not (the reference's StandardScaler + intercept-free ridge).
    """
    n = m.n.to(m.sx.dtype)
    mean_x = m.sx / n
    zeros_x, zeros_y = torch.zeros_like(m.sx), torch.zeros_like(m.sy)
    cx = mean_x if (fit_intercept or standardize) else zeros_x
    cy = m.sy / n.to(m.sy.dtype) if fit_intercept else zeros_y
    s = torch.ones_like(m.sx)
    if standardize:
        var = (torch.diagonal(m.xtx) / n - mean_x**2).clamp_min(0.0)
        std = var.sqrt()
        eps = torch.finfo(std.dtype).eps
        constant = std <= 10 * eps * (mean_x.abs() + 1.0)
        s = torch.where(constant, torch.ones_like(std), std)
    return Offsets(cx, cy, s)


def scaled_gram(m: Moments, o: Offsets) -> torch.Tensor:
    """``Σ zzᵀ`` (p, p) with ``z = (x - cx) / s``."""
    g = m.xtx - torch.outer(o.cx, m.sx) - torch.outer(m.sx, o.cx) + m.n * torch.outer(o.cx, o.cx)
    return g / torch.outer(o.s, o.s)


def _like(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``a`` in ``ref``'s dtype (the target dtype for anything multiplied into a (p, t) array)."""
    return a.to(ref.dtype)


def scaled_cross(m: Moments, o: Offsets) -> torch.Tensor:
    """``Σ z (y - cy)ᵀ`` (p, t), in the target dtype."""
    cx, sx = _like(o.cx, m.xty), _like(m.sx, m.xty)
    c = m.xty - torch.outer(cx, m.sy) - torch.outer(sx, o.cy) + m.n * torch.outer(cx, o.cy)
    return c / _like(o.s, m.xty)[:, None]


def centred_yy(m: Moments, o: Offsets) -> torch.Tensor:
    """``Σ (y - cy)²`` per target (t)."""
    return m.syy - 2.0 * o.cy * m.sy + m.n * o.cy**2


def eig_solve_parts(gram: torch.Tensor, cross: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigendecompose the Gram once so that ``W(α) = V diag(1 / (e + α)) Q`` for any α.

    Directions with a numerically zero eigenvalue (``e <= max(e) * p * eps`` with the Gram's eps, e.g. when p > n)
    are dropped: the exact ``cross`` has no component there, so only rounding noise (amplified by ``1/α``) is
    removed. With a float32 Gram that cut-off can exceed small alphas (see :func:`truncation_level`).

    Returns:
        ``e`` (p) eigenvalues (clamped at 0, Gram dtype), ``V`` (p, p) eigenvectors (Gram dtype), ``Q = Vᵀ cross``
        (p, t, target dtype) with the null directions zeroed.
    """
    e, v = torch.linalg.eigh(gram)
    e = e.clamp_min(0.0)
    q = _like(v, cross).T @ cross
    q = q * _like(e > truncation_level(e, gram.shape[0]), q)[:, None]
    return e, v, q


def truncation_level(e: torch.Tensor, p: int) -> torch.Tensor:
    """Eigenvalues at or below ``max(e) * p * eps`` (eps of ``e``'s dtype) are treated as zero."""
    return e.max() * p * torch.finfo(e.dtype).eps


def heldout_sse(
    train: Moments, held: Moments, alphas: torch.Tensor, fit_intercept: bool, standardize: bool
) -> torch.Tensor:
    """Exact held-out sum of squared errors (n_alphas, t) of ridge fitted on ``train``, scored on ``held``.

    With ``W(α)`` fitted on ``train`` and ``z``, ``y - cy`` built with the *training* offsets, the held-out error per
    target is ``Σ(y-cy)² - 2 wᵀ Σz(y-cy) + wᵀ (Σzzᵀ) w``; every sum comes from ``held``'s moments. In the training
    eigenbasis the cross term is one (n_alphas, p) x (p, t) product and the quadratic term one (p, p) x (p, t)
    product per alpha ((n_held, p) x (p, t) when the held-out fold is small, see ``_held_quadratic``).
    """
    o = offsets_from(train, fit_intercept, standardize)
    e, v, q = eig_solve_parts(scaled_gram(train, o), scaled_cross(train, o))
    a = _like(v, q).T @ scaled_cross(held, o)  # (p, t)
    d = _like(1.0 / (e[None, :] + alphas[:, None]), q)  # (n_alphas, p)
    cross_term = d @ (q * a)
    quad = _held_quadratic(scaled_gram(held, o), v, int(held.n))
    quad_term = torch.stack([quad(d_a[:, None] * q) for d_a in d])
    return centred_yy(held, o)[None, :] - 2.0 * cross_term + quad_term


def _held_quadratic(
    gram_held: torch.Tensor, v: torch.Tensor, n_held: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Function ``u -> colsum(u * (Vᵀ G V) u)`` for (p, t) ``u``, with ``G`` the held-out Gram.

    ``G`` has rank <= ``n_held``; when that is well below p, ``G = L Lᵀ`` from its top ``n_held`` eigenpairs makes each
    call an (n_held, p) x (p, t) product instead of (p, p) x (p, t).
    """
    p = gram_held.shape[0]
    if n_held >= p // 2:
        m = v.T @ gram_held @ v
        return lambda u: (u * (_like(m, u) @ u)).sum(0)
    lam, vec = torch.linalg.eigh(gram_held)
    lam, vec = lam[-n_held:].clamp_min(0.0), vec[:, -n_held:]
    r = (vec * lam.sqrt()).T @ v  # (n_held, p): Lᵀ V
    return lambda u: (_like(r, u) @ u).square().sum(0)


def solve_per_target(
    m: Moments, alpha_per_target: torch.Tensor, fit_intercept: bool, standardize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit on ``m`` with one alpha per target; return ``coef`` (p, t) and ``intercept`` (t) in original x units, in
    the target dtype, and the eigenvalues (p) of the standardised Gram the solve used."""
    o = offsets_from(m, fit_intercept, standardize)
    e, v, q = eig_solve_parts(scaled_gram(m, o), scaled_cross(m, o))
    w = _like(v, q) @ (q / (_like(e, q)[:, None] + _like(alpha_per_target, q)[None, :]))
    coef = w / _like(o.s, q)[:, None]
    intercept = o.cy - _like(o.cx, q) @ coef
    return coef, intercept, e


def kfold_assign(ids: torch.Tensor, n_folds: int) -> torch.Tensor:
    """Fold of every sample, grouping equal ids: unique ids in first-appearance order cut into contiguous blocks.

    Like ``sklearn.model_selection.KFold(n_folds)`` (no shuffle) on the unique ids, so all repeats of a stimulus land
    in the same fold. Needs every id up front; a streaming caller can use ``ids % n_folds`` instead.

    Args:
        ids: (n,) integer ids (e.g. stimulus ids).
        n_folds: number of folds (at most the number of unique ids).
    """
    if ids.ndim != 1 or ids.is_floating_point():
        raise ValueError(f"kfold_assign: ids must be a 1-D integer tensor, got shape {tuple(ids.shape)} {ids.dtype}")
    uniq, rank = _first_appearance(ids)
    if not 2 <= n_folds <= len(uniq):
        raise ValueError(f"kfold_assign: n_folds must be in [2, {len(uniq)}] (number of unique ids), got {n_folds}")
    sizes = torch.full((n_folds,), len(uniq) // n_folds, dtype=torch.long)
    sizes[: len(uniq) % n_folds] += 1
    fold_of_unique = torch.repeat_interleave(torch.arange(n_folds), sizes)
    fold_sorted = fold_of_unique[rank]  # sorted-unique position -> fold
    return fold_sorted[torch.searchsorted(uniq, ids.cpu())].to(ids.device)


def _first_appearance(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique ids and, for each, its rank in first-appearance order."""
    ids = ids.cpu()
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first_pos = torch.full((len(uniq),), len(ids), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(ids)), reduce="amin"
    )
    rank = torch.empty_like(first_pos)
    rank[torch.argsort(first_pos)] = torch.arange(len(uniq))
    return uniq, rank
