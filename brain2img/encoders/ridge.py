"""Streaming K-fold ridge regression with per-target alpha, fitted exactly from sufficient statistics.

The Osaka method (Takagi & Nishimoto, CVPR 2023) decodes with ``make_pipeline(StandardScaler(),
himalaya.RidgeCV(alphas))``: 5-fold CV, one alpha per target. :class:`StreamingRidgeCV` gives the same estimator
without holding the data: ``update`` adds each batch to per-fold sums (n, Σx, Σy, XᵀX, XᵀY, Σy²),
``all_reduce`` sums them over DDP ranks and nodes, and ``fit`` solves everything in closed form (see
:mod:`brain2img.encoders.ridge_stats`).

Cost: ``update`` is O(B p (p + t)); ``fit`` is n-free: per fold one (p, p) ``eigh`` plus (p, p) x (p, t) products
(two, plus one per alpha for the exact held-out error; (n_k, p) x (p, t) after one more ``eigh`` when the held-out fold
has n_k < p/2 samples), then one more ``eigh`` for the final refit. No per-target loop, no per-alpha solve. Memory:
``n_folds`` x (p² + p t) stored values. A dual (kernel) form would be cheaper for p >> n, but it needs the data
(n x n kernels), which a streaming fit does not keep, so it is not implemented; with alpha > 0 the primal form stays
well posed for p > n.

Precision: the sums are raw (uncentred). The feature side (``XᵀX``, eigendecompositions) is float64 by default
whatever ``dtype`` says, because float32 eigenvalues cannot resolve alphas far below ``p eps max(eigenvalue)``; the
large target side (``XᵀY``) may be float32. In float32 the cancellation in ``XᵀY - n x̄ȳᵀ`` loses digits when means
are large compared to their spread, so centre such data first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from brain2img.encoders.ridge_stats import Moments, heldout_sse, solve_per_target, truncation_level

_STATS = ("n", "sx", "sy", "xtx", "xty", "syy")


def _float_dtype(value: str | torch.dtype, name: str) -> torch.dtype:
    dt = getattr(torch, value, None) if isinstance(value, str) else value
    if dt not in (torch.float32, torch.float64):
        raise ValueError(f"StreamingRidgeCV: {name} must be float32 or float64, got {value!r}")
    return dt


class StreamingRidgeCV(nn.Module):
    """Ridge regression ``y = x @ coef_ + intercept_`` with per-target alpha chosen by K-fold CV from statistics.

    The caller assigns every sample a fold (e.g. from its stimulus id so repeats of a stimulus share a fold). For
    each target, ``fit`` picks the alpha with the smallest held-out sum of squared errors summed over the folds
    (``cv_sse_``), then refits on all samples. Statistics and results are registered buffers: they follow
    ``.to(device)`` and are saved in the ``state_dict``.

    Args:
        n_features: p, the number of input features.
        n_targets: t, the number of regression targets.
        alphas: candidate penalties (all > 0); default is the Osaka grid 1e-6 ... 1.
        n_folds: number of cross-validation folds (>= 2).
        fit_intercept: centre x and y (as ``sklearn.linear_model.Ridge``); the intercept is not penalised.
        standardize: z-score x with the training mean and standard deviation (ddof 0) like
            ``sklearn.preprocessing.StandardScaler``; the penalty then acts on standardised coefficients.
            ``standardize=True, fit_intercept=False`` is the reference pipeline exactly (x centred and scaled, y
            not centred).
        dtype: dtype of the target-side statistics (``XᵀY`` (p, t), ``Σy``, ``Σy²``) and of the solution
            (``"float64"`` or ``"float32"``); float32 halves the memory and time of the large (p, t) parts.
        gram_dtype: dtype of the feature-side statistics (``XᵀX``, ``Σx``), the eigendecompositions and the alphas
            (default float64, whatever ``dtype`` is). Eigen-directions below ``p * eps * max(eigenvalue)`` are
            dropped; with a float32 Gram that cut-off is about 20 at NSD scale, above the Osaka grid's 1e-6 ... 1,
            which turns the ridge into truncated least squares. ``fit`` warns when float32 statistics meet
            directions below that resolution.
    """

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        alphas: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        n_folds: int = 5,
        fit_intercept: bool = True,
        standardize: bool = True,
        dtype: str | torch.dtype = "float64",
        gram_dtype: str | torch.dtype = "float64",
    ) -> None:
        super().__init__()
        if n_features < 1 or n_targets < 1:
            raise ValueError(f"StreamingRidgeCV: n_features and n_targets must be >= 1, got {n_features}, {n_targets}")
        if n_folds < 2:
            raise ValueError(f"StreamingRidgeCV: n_folds must be >= 2, got {n_folds}")
        alphas = tuple(float(a) for a in alphas)
        if not alphas or any(not a > 0 or a == float("inf") for a in alphas):
            raise ValueError(f"StreamingRidgeCV: alphas must be a non-empty list of finite values > 0, got {alphas}")
        dt, gt = _float_dtype(dtype, "dtype"), _float_dtype(gram_dtype, "gram_dtype")
        self.n_features, self.n_targets, self.n_folds = n_features, n_targets, n_folds
        self.fit_intercept, self.standardize = fit_intercept, standardize
        p, t, k = n_features, n_targets, n_folds
        self.register_buffer("alphas", torch.tensor(alphas, dtype=gt))
        self.register_buffer("n", torch.zeros(k, dtype=torch.long), persistent=False)
        self.register_buffer("sx", torch.zeros(k, p, dtype=gt), persistent=False)
        self.register_buffer("sy", torch.zeros(k, t, dtype=dt), persistent=False)
        self.register_buffer("xtx", torch.zeros(k, p, p, dtype=gt), persistent=False)
        self.register_buffer("xty", torch.zeros(k, p, t, dtype=dt), persistent=False)
        self.register_buffer("syy", torch.zeros(k, t, dtype=dt), persistent=False)
        self.register_buffer("coef_", torch.zeros(p, t, dtype=dt))
        self.register_buffer("intercept_", torch.zeros(t, dtype=dt))
        self.register_buffer("alpha_", torch.zeros(t, dtype=dt))
        self.register_buffer("cv_sse_", torch.zeros(len(alphas), t, dtype=dt))
        self.register_buffer("fitted_", torch.tensor(False))

    # ------------------------------------------------------------------ statistics
    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or a loaded state_dict of a fitted model) has set the coefficients."""
        return bool(self.fitted_)

    def reset_stats(self) -> None:
        """Zero the accumulated statistics (the fitted solution, if any, is kept).

        The statistics are not saved in the state dict (only the solution is): checkpoints stay small.
        """
        for name in _STATS:
            getattr(self, name).zero_()

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> None:
        """Add a batch to the statistics of each sample's fold.

        Args:
            x: (B, p) features (any float dtype/device; converted to the module's).
            y: (B, t) targets.
            fold: (B,) integer fold of each sample, in ``[0, n_folds)``.
        """
        self._check_batch(x, y, fold)
        dev, gt, dt = self.xtx.device, self.xtx.dtype, self.xty.dtype
        xg, y, fold = x.detach().to(dev, gt), y.detach().to(dev, dt), fold.detach().to(dev, torch.long)
        x = xg.to(dt)
        onehot = torch.nn.functional.one_hot(fold, self.n_folds)  # (B, K)
        self.n += onehot.sum(0)
        self.sx += onehot.to(gt).T @ xg
        self.sy += onehot.to(dt).T @ y
        self.syy += onehot.to(dt).T @ (y * y)
        for k in torch.unique(fold).tolist():
            rows = fold == k
            self.xtx[k] += xg[rows].T @ xg[rows]
            self.xty[k] += x[rows].T @ y[rows]

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> None:
        p, t = self.n_features, self.n_targets
        if x.ndim != 2 or x.shape[1] != p:
            raise ValueError(f"StreamingRidgeCV.update: x must have shape (B, {p}) (n_features), got {tuple(x.shape)}")
        if y.ndim != 2 or y.shape[1] != t:
            raise ValueError(f"StreamingRidgeCV.update: y must have shape (B, {t}) (n_targets), got {tuple(y.shape)}")
        if fold.ndim != 1 or fold.is_floating_point() or fold.is_complex() or fold.dtype == torch.bool:
            raise ValueError(f"StreamingRidgeCV.update: fold must be a 1-D integer tensor, got {fold.dtype} "
                             f"{tuple(fold.shape)}")
        if not len(x) == len(y) == len(fold):
            raise ValueError(f"StreamingRidgeCV.update: x, y and fold need the same batch size, got {len(x)}, "
                             f"{len(y)}, {len(fold)}")
        if len(fold) and (int(fold.min()) < 0 or int(fold.max()) >= self.n_folds):
            raise ValueError(f"StreamingRidgeCV.update: fold values must be in [0, {self.n_folds}), got range "
                             f"[{int(fold.min())}, {int(fold.max())}]")
        for name, v in (("x", x), ("y", y)):
            if not v.is_floating_point():
                raise ValueError(f"StreamingRidgeCV.update: {name} must be a float tensor, got {v.dtype}")
            if not bool(torch.isfinite(v).all()):
                bad = int((~torch.isfinite(v)).any(1).sum())
                raise ValueError(f"StreamingRidgeCV.update: {name} has non-finite values (NaN/inf) in {bad} of "
                                 f"{len(v)} samples")

    def all_reduce(self) -> None:
        """Sum the statistics over all ranks if ``torch.distributed`` is initialised (no-op otherwise).

        Call it exactly once per accumulation, on every rank, before ``fit``: every rank then holds the global sums
        and ``fit`` gives the single-process solution.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        for name in _STATS:
            torch.distributed.all_reduce(getattr(self, name), op=torch.distributed.ReduceOp.SUM)

    def _moments(self, k: int | None = None) -> Moments:
        parts = [getattr(self, name) for name in _STATS]
        return Moments(*(p.sum(0) if k is None else p[k] for p in parts))

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self) -> StreamingRidgeCV:
        """Choose each target's alpha by K-fold CV and refit on all samples; sets ``coef_``, ``intercept_``,
        ``alpha_`` and ``cv_sse_`` (held-out SSE summed over folds, (n_alphas, t)). Returns ``self``."""
        counts = self.n.tolist()
        total = sum(counts)
        empty = [k for k, c in enumerate(counts) if c == 0]
        if empty:
            raise RuntimeError(f"StreamingRidgeCV.fit: folds {empty} have no samples (counts per fold {counts}); "
                               "call update() with samples in every fold first")
        if any(total - c < 2 for c in counts):
            raise RuntimeError(f"StreamingRidgeCV.fit: every fold's training part needs >= 2 samples, counts {counts}")
        everything = self._moments()
        sse = torch.zeros_like(self.cv_sse_)
        for k in range(self.n_folds):
            held = self._moments(k)
            sse += heldout_sse(everything - held, held, self.alphas, self.fit_intercept, self.standardize)
        best = sse.argmin(0)
        alpha = self.alphas[best].to(self.alpha_.dtype)
        coef, intercept, eigenvalues = solve_per_target(everything, alpha, self.fit_intercept, self.standardize)
        self._warn_precision(eigenvalues, int(everything.n))
        self.cv_sse_.copy_(sse)
        self.alpha_.copy_(alpha)
        self.coef_.copy_(coef)
        self.intercept_.copy_(intercept)
        self.fitted_.fill_(True)
        return self

    def _warn_precision(self, eigenvalues: torch.Tensor, n_samples: int) -> None:
        """Warn when float32 statistics cannot resolve directions that the smallest alpha still shapes.

        With a float32 Gram, eigen-directions below ``p eps32 max(e)`` are dropped (truncated least squares, not
        the ridge). With a float64 Gram and float32 ``XᵀY``, those directions are kept but their coefficients
        carry the float32 rounding of ``XᵀY`` amplified by ``max(e) / (e + alpha)``.
        """
        if self.xty.dtype == torch.float64 and self.xtx.dtype == torch.float64:
            return
        e = eigenvalues.double()  # of the standardised Gram of all samples, from the final solve
        alpha = float(self.alphas.min())
        cut = float(truncation_level(e.float(), self.n_features))
        rank = n_samples - int(self.fit_intercept or self.standardize)  # centring removes one dimension
        null = max(0, self.n_features - rank)  # directions without data: dropped at any precision
        weak = int((e + alpha <= cut).sum()) - null
        if not weak:
            return
        if self.xtx.dtype == torch.float32:
            what = "are dropped: this fit is truncated least squares, not the ridge; use gram_dtype float64"
        else:
            what = ("keep float32 rounding of XᵀY amplified up to max(eigenvalue) / (eigenvalue + alpha); check "
                    "against dtype float64 on a subset of targets, or use larger alphas")
        warnings.warn(f"StreamingRidgeCV.fit: {weak} of {self.n_features} eigen-directions of the standardised Gram "
                      f"(eigenvalue + smallest alpha {alpha:.3g} <= {cut:.3g}, the float32 resolution) {what}",
                      stacklevel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict (..., t) from (..., p), in ``x``'s dtype."""
        if not self.is_fitted:
            raise RuntimeError("StreamingRidgeCV: call update() then fit() (or load a fitted state_dict) before "
                               "predicting")
        if x.shape[-1] != self.n_features:
            raise ValueError(f"StreamingRidgeCV: expected {self.n_features} features in the last dimension of x, got "
                             f"{x.shape[-1]} (shape {tuple(x.shape)})")
        return x @ self.coef_.to(x.dtype) + self.intercept_.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"n_features={self.n_features}, n_targets={self.n_targets}, n_alphas={len(self.alphas)}, "
                f"n_folds={self.n_folds}, fit_intercept={self.fit_intercept}, standardize={self.standardize}, "
                f"dtype={self.xty.dtype}, gram_dtype={self.xtx.dtype}")
