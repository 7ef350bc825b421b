"""Contrastive losses, usable on one process or gathered across DDP ranks: MindEye's BiMixCo and SoftCLIP, and the
row-wise InfoNCE of DC-MAE's double contrast.

All losses L2-normalise the flattened predictions ``p`` and targets ``t`` and score ``p_i . t_j / temp``.

Distributed use (the open_clip ``local_loss`` scheme): with ``gather=True`` every rank gathers the features of all
ranks with :func:`all_gather_with_grad`, so each local query is contrasted with the negatives of the whole global
batch; its labels sit at columns ``rank * B + i``. Each rank's loss is the mean over its own ``B`` queries, so the
mean of the rank losses equals the loss of the concatenated global batch. The gather keeps the gradient: backward
sends each rank the sum of every rank's gradient with respect to its features, i.e. ``world_size`` times the
gradient of the global loss, and DDP's gradient averaging divides that factor out again -- the parameters receive
exactly the gradient of the global-batch loss. All ranks must hold the same batch size. Without an initialised
process group (or with one process) the gather is the identity and ``gather=True`` changes nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the gradient path to each rank's own ``x``.

    Uses :func:`torch.distributed.nn.functional.all_gather` (its backward sums the gradients of all ranks for each
    chunk and returns them to the chunk's owner). Returns ``x`` unchanged when no process group is initialised or
    the world has one process.

    Raises:
        ValueError: when the ranks' tensors differ in shape (e.g. an uneven last batch); the message lists the
            shapes.
    """
    _, world = _world()
    if world == 1:
        return x
    shape = torch.tensor(x.shape, dtype=torch.int64, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    listed = [tuple(s.tolist()) for s in shapes]
    if any(s != listed[0] for s in listed):
        raise ValueError(
            f"all_gather_with_grad: every rank must pass a tensor of the same shape, got {listed} (rank order); "
            "use drop_last=True or equal per-rank batch sizes"
        )
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def _check_pair(preds: Tensor, targets: Tensor, owner: str) -> None:
    if preds.shape != targets.shape or preds.ndim < 2 or preds.shape[0] < 1:
        raise ValueError(
            f"{owner}: 'preds' and 'targets' must have the same shape (B, ...) with B >= 1, got "
            f"{tuple(preds.shape)} and {tuple(targets.shape)}"
        )


def _check_temp(temp: float | Tensor, owner: str) -> None:
    if not float(temp) > 0:
        raise ValueError(f"{owner}: 'temp' must be > 0, got {float(temp)!r}")


def _normalized_features(preds: Tensor, targets: Tensor, gather: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Local and (optionally) gathered L2-normalised flat features, plus the column offset of the local block."""
    p = F.normalize(preds.flatten(1).float(), dim=-1)
    t = F.normalize(targets.flatten(1).float(), dim=-1)
    if not gather:
        return p, t, p, t, 0
    rank, _ = _world()
    return p, t, all_gather_with_grad(p), all_gather_with_grad(t), rank * p.shape[0]


def _soft_cross_entropy(logits: Tensor, soft_labels: Tensor) -> Tensor:
    """Mean over rows of ``-sum_j soft_labels[i, j] * log_softmax(logits)[i, j]``."""
    return -(logits.log_softmax(dim=-1) * soft_labels).sum(dim=-1).mean()


def sample_beta(n: int, alpha: float, beta: float, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """Draw ``n`` samples of ``Beta(alpha, beta)`` from ``generator`` (``torch.distributions.Beta`` takes none).

    ``Beta = G_a / (G_a + G_b)`` with independent ``G_s ~ Gamma(s)``; each Gamma draw is Marsaglia-Tsang for
    ``Gamma(s + 1)`` times ``U ** (1 / s)``, done in log space in float64 so that shapes as small as MindEye's 0.15
    neither underflow nor lose precision.

    Args:
        n: number of samples.
        alpha: first shape, > 0.
        beta: second shape, > 0.
        generator: random source; its device is used when ``device`` is None.
        device: where to draw.

    Returns:
        ``(n,)`` float64 tensor in ``[0, 1]``.
    """
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"sample_beta: shapes must be > 0, got alpha={alpha!r}, beta={beta!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    log_a = _log_gamma_sample(n, alpha, generator, device)
    log_b = _log_gamma_sample(n, beta, generator, device)
    return torch.sigmoid(log_a - log_b)


def _log_gamma_sample(n: int, shape: float, generator: torch.Generator | None, device: torch.device | str) -> Tensor:
    """``log`` of ``n`` draws of ``Gamma(shape, 1)`` (Marsaglia & Tsang 2000 with the ``shape < 1`` boost)."""
    d = shape + 1.0 - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel() > 0:
        m = todo.numel()
        x = torch.randn(m, dtype=torch.float64, device=device, generator=generator)
        u = torch.rand(m, dtype=torch.float64, device=device, generator=generator)
        v = (1.0 + c * x) ** 3
        ok = v > 0
        log_v = torch.log(torch.where(ok, v, torch.ones_like(v)))
        ok &= torch.log(u) < 0.5 * x * x + d - d * v + d * log_v
        out[todo[ok]] = torch.log(torch.as_tensor(d, dtype=torch.float64)) + log_v[ok]
        todo = todo[~ok]
    boost = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
    return out + torch.log(boost) / shape


def mixco(
    voxels: Tensor, beta: float = 0.15, s_thresh: float = 0.5, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """BiMixCo input mixing (MindEye ``utils.mixco``); the input is not modified.

    Each sample is selected with probability ``s_thresh`` (``U < s_thresh``, so 0 selects none and 1 selects all);
    a selected sample becomes ``lam_i * x_i + (1 - lam_i) * x_perm[i]`` with ``lam_i ~ Beta(beta, beta)`` and a
    random permutation ``perm`` of the batch; unselected samples are kept and get ``lam_i = 1``. The targets are not
    mixed; :func:`mixco_nce` turns ``(perm, betas)`` into soft labels.

    Args:
        voxels: ``(B, ...)`` inputs.
        beta: both shapes of the Beta distribution (MindEye: 0.15, mostly near 0 or 1).
        s_thresh: selection probability in ``[0, 1]``.
        generator: random source for the permutation, the coefficients and the selection; its device is where they
            are drawn (``voxels.device`` when None).

    Returns:
        ``(mixed, perm, betas, select)``: mixed inputs like ``voxels``, ``perm`` ``(B,)`` int64, ``betas`` ``(B,)``
        in the dtype of ``voxels`` (1 where not selected), ``select`` ``(B,)`` bool; all on ``voxels.device``.
    """
    if voxels.ndim < 1 or voxels.shape[0] < 1:
        raise ValueError(f"mixco: 'voxels' must have shape (B, ...) with B >= 1, got {tuple(voxels.shape)}")
    if not 0.0 <= s_thresh <= 1.0:
        raise ValueError(f"mixco: 's_thresh' must be in [0, 1], got {s_thresh!r}")
    b = voxels.shape[0]
    draw_device = generator.device if generator is not None else voxels.device
    perm = torch.randperm(b, generator=generator, device=draw_device).to(voxels.device)
    betas = sample_beta(b, beta, beta, generator=generator, device=draw_device).to(voxels.device)
    select = (torch.rand(b, generator=generator, device=draw_device) < s_thresh).to(voxels.device)
    betas = torch.where(select, betas, torch.ones_like(betas)).to(voxels.dtype)
    lam = betas.reshape(-1, *([1] * (voxels.ndim - 1)))
    mixed = torch.where(select.reshape(lam.shape), lam * voxels + (1 - lam) * voxels[perm], voxels)
    return mixed, perm, betas, select


def mixco_labels(perm: Tensor, betas: Tensor) -> Tensor:
    """Soft labels of BiMixCo: ``L[i, i] += lam_i`` and ``L[i, perm[i]] += 1 - lam_i``; each row sums to 1.

    The reference assigns instead of adding (``probs[i, perm[i]] = 1 - lam_i`` after ``diag(lam)``), so a sample
    the permutation maps to itself gets ``1 - lam_i`` on the diagonal. Mixing a sample with itself leaves it
    unchanged, so its label here is 1 on the diagonal (the reference's quirk is deliberately not reproduced).

    Args:
        perm: ``(B,)`` permutation from :func:`mixco`.
        betas: ``(B,)`` mixing coefficients from :func:`mixco`.

    Returns:
        ``(B, B)`` float32 labels.
    """
    if perm.ndim != 1 or betas.shape != perm.shape:
        raise ValueError(
            f"mixco_labels: 'perm' and 'betas' must both have shape (B,), got {tuple(perm.shape)} and "
            f"{tuple(betas.shape)}"
        )
    b = perm.shape[0]
    lam = betas.float()
    rows = torch.arange(b, device=perm.device)
    labels = torch.diag(lam)
    return labels.index_put((rows, perm.to(torch.int64)), 1 - lam, accumulate=True)


def mixco_nce(
    preds: Tensor,
    targets: Tensor,
    temp: float | Tensor = 0.006,
    perm: Tensor | None = None,
    betas: Tensor | None = None,
    select: Tensor | None = None,
    *,
    gather: bool = False,
) -> Tensor:
    """BiMixCo loss (MindEye ``mixco_nce``, bidirectional): soft-label InfoNCE between mixed predictions and targets.

    ``logits = p t^T / temp`` with the L2-normalised flat features; the labels are :func:`mixco_labels`; the loss
    is the mean of the soft cross-entropy of ``logits`` against the labels and of ``logits^T`` against the labels
    transposed. Without ``perm`` / ``betas`` (or with ``betas`` all 1) this is the symmetric InfoNCE with hard
    labels. Computed in float32.

    Args:
        preds: ``(B, ...)`` predictions from (mixed) brain inputs.
        targets: ``(B, ...)`` unmixed targets, same shape.
        temp: temperature (MindEye1: 0.006).
        perm: ``(B,)`` permutation from :func:`mixco`; give it together with ``betas``.
        betas: ``(B,)`` coefficients from :func:`mixco`.
        select: ``(B,)`` selection mask from :func:`mixco`; only checked (``betas`` is already 1 where unselected).
        gather: contrast against the features of every DDP rank (see the module docstring).
    """
    _check_pair(preds, targets, "mixco_nce")
    _check_temp(temp, "mixco_nce")
    b = preds.shape[0]
    if (perm is None) != (betas is None):
        raise ValueError("mixco_nce: give 'perm' and 'betas' together (both from mixco) or neither")
    if perm is None:
        labels = torch.eye(b, device=preds.device)
    else:
        if perm.shape != (b,):
            raise ValueError(f"mixco_nce: 'perm' must have shape ({b},), got {tuple(perm.shape)}")
        labels = mixco_labels(perm.to(preds.device), betas.to(preds.device))
    if select is not None and select.shape != (b,):
        raise ValueError(f"mixco_nce: 'select' must have shape ({b},), got {tuple(select.shape)}")
    p, t, all_p, all_t, offset = _normalized_features(preds, targets, gather)
    n_all = all_t.shape[0]
    forward_labels = labels.new_zeros(b, n_all)
    forward_labels[:, offset : offset + b] = labels
    backward_labels = labels.new_zeros(b, n_all)
    backward_labels[:, offset : offset + b] = labels.T
    loss_p = _soft_cross_entropy(p @ all_t.T / temp, forward_labels)  # each prediction ranks all targets
    loss_t = _soft_cross_entropy(t @ all_p.T / temp, backward_labels)  # each target ranks all predictions
    return (loss_p + loss_t) / 2


def soft_clip_loss(preds: Tensor, targets: Tensor, temp: float | Tensor, *, gather: bool = False) -> Tensor:
    """SoftCLIP loss (MindEye ``soft_clip_loss``): InfoNCE whose labels are the targets' own similarity distribution.

    With the L2-normalised flat features, ``logits = p t^T / temp`` and ``soft = softmax(t t^T / temp)`` (row-wise);
    the loss is ``(CE(logits, soft) + CE(logits^T, soft)) / 2`` with soft-label cross-entropy averaged over rows
    (``soft`` is symmetric before the softmax, so row ``j`` of ``logits^T`` uses row ``j`` of ``soft``). Computed in
    float32.

    Args:
        preds: ``(B, ...)`` predictions.
        targets: ``(B, ...)`` targets, same shape.
        temp: temperature (MindEye1: :func:`brain2img.schedules.softclip_temperatures`, 0.004 -> 0.0075).
        gather: contrast against the features of every DDP rank (see the module docstring).
    """
    _check_pair(preds, targets, "soft_clip_loss")
    _check_temp(temp, "soft_clip_loss")
    p, t, all_p, all_t, _ = _normalized_features(preds, targets, gather)
    soft = (t @ all_t.T / temp).softmax(dim=-1)
    loss_p = _soft_cross_entropy(p @ all_t.T / temp, soft)
    loss_t = _soft_cross_entropy(t @ all_p.T / temp, soft)
    return (loss_p + loss_t) / 2


def info_nce(query: Tensor, keys: Tensor, temp: float = 0.1, *, gather: bool = False) -> Tensor:
    """Row-wise InfoNCE with in-batch negatives (DC-MAE ``info_nce`` with ``negative_mode='unpaired'``, no explicit
    negatives): ``CE(cos(q_i, k_j) / temp, j = i)`` averaged over the queries; computed in float32.

    Only the queries rank the keys (one direction, as the reference). With query = key and mutually orthogonal
    batch items the loss is ``log(1 + (N - 1) exp(-1 / temp))``; with unrelated random keys it is about ``log N``.

    Args:
        query: ``(B, ...)`` queries (DC-MAE: the reconstruction of a masked view).
        keys: ``(B, ...)`` positives, same shape (the unmasked input, or the reconstruction of a second view).
        temp: temperature (reference 0.1).
        gather: contrast against the keys of every DDP rank (see the module docstring).
    """
    _check_pair(query, keys, "info_nce")
    _check_temp(temp, "info_nce")
    q = F.normalize(query.flatten(1).float(), dim=-1)
    k = F.normalize(keys.flatten(1).float(), dim=-1)
    all_k, offset = (all_gather_with_grad(k), _world()[0] * len(k)) if gather else (k, 0)  # only the keys are needed
    labels = torch.arange(len(q), device=q.device) + offset
    return F.cross_entropy(q @ all_k.T / temp, labels)
