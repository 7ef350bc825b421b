"""Benchmark: the Osaka ridge decoder at NSD scale with :class:`StreamingRidgeCV` (float32, optionally TF32 matmuls).

Problem (defaults): 24,980 trials x 7,000 voxels -> 59,136 targets (77 x 768 CLIP text tokens), 5-fold CV, 7 alphas
(1e-6 ... 1), one alpha per target, StandardScaler + ridge with intercept. ``update`` streams the trials in batches of
``--batch`` (2,000) into per-fold sufficient statistics; ``fit`` chooses every target's alpha from the exact held-out
error and refits (see :mod:`brain2img.encoders.ridge`). Timed separately: update (sum over batches), fit, total.

Variants (``--variants``): ``fp32`` (float32 ``XᵀY`` and target-side solves, float64 ``XᵀX`` and ``eigh`` -- the
ridge's default Gram precision; full-precision float32 matmuls: ``torch.backends.cuda.matmul.allow_tf32 = False``),
``tf32`` (the same with TF32 tensor-core matmuls for the float32 parts; CUDA only), ``fp32_gram32`` (everything in
float32, eigen-solves included: see the cut-off below) and ``fp64`` (everything float64; on an H100 the FP64 tensor
cores run about as fast as non-TF32 float32). CPU default: ``fp32``.

Data (random, made on the device, not timed): ``X = (G diag(s)) Qᵀ diag(c)`` with ``G`` Gaussian (n, p), ``Q`` a random
orthogonal (p, p), singular-value scales ``s`` geometric from 1 down to ``--spectrum_floor`` (0.1) and voxel scales
``c`` uniform in [0.5, 2], so the standardised Gram has eigenvalues from ~n down to ~n x floor²: small enough that the
Osaka alphas change the solution. Targets ``Y = X W + noise`` with ``W`` Gaussian and a per-target noise level
(``--noise_min`` ... ``--noise_max`` times the signal's standard deviation, geometric across targets), so the chosen
alphas spread over the grid instead of all landing on one value. Trials are generated batch by batch as they are
streamed (the (n, t) target matrix never exists in full); folds are contiguous blocks of trials (KFold order).

Memory: the statistics hold ``n_folds x (p² + p t)`` values: 5 x 7,000 x 59,136 x 4 B = 8.3 GB of ``XᵀY`` in float32
(+ 1.0 GB ``XᵀX``); ``fit`` adds about ten (p, t) temporaries of 1.66 GB (coefficients, centred cross-products,
eigenbasis projections), so one chunk of all 59,136 targets fits an 80 GB H100. ``--target_chunk`` fits the targets in
chunks (one ``StreamingRidgeCV`` per chunk, each streaming X again and repeating the ``eigh`` calls) for smaller GPUs.

Check: the targets ``--check_targets`` (evenly spaced, all noise levels) are refitted in float64 on ``--ref_device``
(default cpu) from the same data; printed: the fraction of equal chosen alphas, ``max|coef - ref| / max|ref|`` and
the relative prediction error ``||X (coef - ref)|| / ||X ref||`` on the first batch of trials.

FLOPs (matmuls, analytic): update ``2 n p (p + t)``; fit per fold ``2 p² t`` (``Vᵀ cross`` for training and held-out
parts, 2x) + ``n_alphas x 2 p² t`` (the held-out quadratic term; ``2 n_k p t`` each when the held-out fold has
``n_k < p / 2`` trials) + ``4 p³``, then the refit ``4 p² t``; ``eigh`` is not counted. At the defaults that is
23 TFLOP for update and 279 TFLOP for fit (203 of them the per-alpha held-out term).

Float32 cut-off: ``ridge_stats.eig_solve_parts`` drops eigen-directions below ``p x eps x max eigenvalue`` with the
Gram's eps. The standardised Gram has trace ``n p``, so its largest eigenvalue is at least ``n``; with a float32 Gram
(``fp32_gram32``) the cut-off is at least ``p n eps32`` = 7,000 x 24,980 x 1.19e-7 = 20.8 at NSD size, above every
Osaka alpha (<= 1): directions small enough for those alphas to matter are dropped (truncated least squares). With
the default float64 Gram they are kept, and only the float32 rounding of ``XᵀY`` along them remains; the ridge warns
in both cases and the script prints the spectrum against the cut-off.

Examples::

    .venv/bin/python bench/ridge_nsd_scale.py --n 4000 --p 1000 --t 2000 --threads 1   # CPU, scaled down, ~10 s
    .venv/bin/python bench/ridge_nsd_scale.py --device cuda                    # NSD scale, fp32 and tf32
    .venv/bin/python bench/ridge_nsd_scale.py --device cuda --ref_device cuda  # float64 check on the GPU (faster)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import harness  # noqa: E402
from brain2img.encoders.ridge import StreamingRidgeCV  # noqa: E402

ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
VARIANTS = ("fp32", "tf32", "fp32_gram32", "fp64")
DTYPES = {"fp32": ("float32", "float64"), "tf32": ("float32", "float64"), "fp32_gram32": ("float32", "float32"),
          "fp64": ("float64", "float64")}  # (dtype, gram_dtype) of StreamingRidgeCV
BLOCK = 4096  # targets per random-number block of the data generator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24980, help="trials")
    ap.add_argument("--p", type=int, default=7000, help="voxels")
    ap.add_argument("--t", type=int, default=59136, help="targets (77 x 768)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--batch", type=int, default=2000, help="trials per update call")
    ap.add_argument("--target_chunk", type=int, default=None, help="targets per StreamingRidgeCV (default: all)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                    help="default: all on cuda, fp32 on cpu")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per variant, median reported "
                    "(default 3 on cuda, 1 on cpu)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 1 on cuda, 0 on cpu)")
    ap.add_argument("--check_targets", type=int, default=256, help="targets refitted in float64 (0: no check)")
    ap.add_argument("--ref_device", default="cpu", help="device of the float64 reference fit")
    ap.add_argument("--spectrum_floor", type=float, default=0.1, help="smallest singular-value scale of X")
    ap.add_argument("--noise_min", type=float, default=1e-3, help="noise / signal std of the cleanest target")
    ap.add_argument("--noise_max", type=float, default=10.0, help="noise / signal std of the noisiest target")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("n", "p", "t", "batch", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.target_chunk is not None and args.target_chunk < 1:
        ap.error(f"--target_chunk must be >= 1, got {args.target_chunk}")
    if not 0 <= args.check_targets <= args.t:
        ap.error(f"--check_targets must be in [0, --t={args.t}], got {args.check_targets}")
    if not 0 < args.noise_min <= args.noise_max or not 0 < args.spectrum_floor <= 1:
        ap.error("need 0 < --noise_min <= --noise_max and 0 < --spectrum_floor <= 1")
    return args


# ---------------------------------------------------------------------------------------------------- data
class Data:
    """The random problem on ``device`` (float32): X (n, p) in full, targets generated batch by batch."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        n, p, t = args.n, args.p, args.t
        gen = torch.Generator(device=device).manual_seed(args.seed)
        q, _ = torch.linalg.qr(torch.randn(p, p, device=device, generator=gen, dtype=torch.float64))
        s = torch.logspace(0, torch.log10(torch.tensor(args.spectrum_floor)).item(), p, device=device)
        c = torch.rand(p, device=device, generator=gen) * 1.5 + 0.5
        g = torch.randn(n, p, device=device, generator=gen)
        self.x = ((g * s) @ q.float().T) * c
        self.args, self.device = args, device
        self.fold = (torch.arange(n, device=device) * args.folds) // n  # contiguous blocks, KFold order
        pilot = self.x[: min(n, 2000)] @ self._weights(0, t)
        ratio = torch.logspace(torch.log10(torch.tensor(args.noise_min)).item(),
                               torch.log10(torch.tensor(args.noise_max)).item(), t, device=device)
        self.noise_std = pilot.std(0) * ratio

    def spectrum(self) -> tuple[float, float]:
        """Largest and smallest eigenvalue of the standardised Gram ``zᵀz`` of all trials (float64)."""
        z = self.x.double()
        z = (z - z.mean(0)) / z.std(0, correction=0)
        e = torch.linalg.eigvalsh(z.T @ z)
        return float(e[-1]), float(e[0])

    def _block_randn(self, rows: int, start: int, stop: int, seed: int) -> torch.Tensor:
        """Gaussian (rows, stop - start) for targets ``start:stop``, drawn in fixed blocks of ``BLOCK`` targets (seed
        ``seed + block``), so a target's values do not depend on the chunking."""
        parts = []
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            gen = torch.Generator(device=self.device).manual_seed(seed + b)
            block = torch.randn(rows, BLOCK, device=self.device, generator=gen)
            parts.append(block[:, max(start, b * BLOCK) - b * BLOCK:min(stop, (b + 1) * BLOCK) - b * BLOCK])
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]

    def _weights(self, start: int, stop: int) -> torch.Tensor:
        return self._block_randn(self.args.p, start, stop, self.args.seed * 7919 + 1) / self.args.p**0.5

    def batches(self, start: int, stop: int, cols: torch.Tensor | None = None):
        """Yield ``(x, y, fold)`` batches of ``--batch`` trials for targets ``start:stop`` (or only ``cols``)."""
        w, sd = self._weights(start, stop), self.noise_std[start:stop]
        if cols is not None:
            w, sd = w[:, cols - start], sd[cols - start]
        for i in range(0, self.args.n, self.args.batch):
            x = self.x[i:i + self.args.batch]
            noise = self._block_randn(len(x), start, stop, self.args.seed * 104729 + 1_000_003 * (i + 1))
            if cols is not None:
                noise = noise[:, cols - start]
            tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
            y = (x @ w).add_(noise.mul_(sd))  # full-precision float32 in every variant: the same data everywhere
            torch.backends.cuda.matmul.allow_tf32 = tf32
            yield x, y, self.fold[i:i + self.args.batch]


# ---------------------------------------------------------------------------------------------------- runs
def chunks(t: int, size: int | None) -> list[tuple[int, int]]:
    size = size or t
    return [(j, min(t, j + size)) for j in range(0, t, size)]


@dataclass
class Run:
    """One timed run: update / fit seconds, and the models (one per target chunk)."""

    update_s: float
    fit_s: float
    models: list[tuple[int, StreamingRidgeCV]]

    @property
    def total_s(self) -> float:
        return self.update_s + self.fit_s


def run_once(data: Data, args: argparse.Namespace, device: torch.device, dtype: tuple[str, str], keep: bool) -> Run:
    """Stream every chunk's targets through ``update`` and ``fit``; only update and fit are timed."""
    update_s = fit_s = 0.0
    models = []
    for start, stop in chunks(args.t, args.target_chunk):
        model = StreamingRidgeCV(args.p, stop - start, args.alphas, args.folds, dtype=dtype[0],
                                 gram_dtype=dtype[1]).to(device)
        for x, y, fold in data.batches(start, stop):
            harness.sync(device)
            t0 = time.perf_counter()
            model.update(x, y, fold)
            harness.sync(device)
            update_s += time.perf_counter() - t0
            del y
        t0 = time.perf_counter()
        model.fit()
        harness.sync(device)
        fit_s += time.perf_counter() - t0
        model.reset_stats()
        if keep:
            models.append((start, model))
        del model
    return Run(update_s, fit_s, models)


def reference(data: Data, args: argparse.Namespace) -> tuple[torch.Tensor, StreamingRidgeCV, float]:
    """Float64 fit of ``--check_targets`` evenly spaced targets on ``--ref_device``: columns, model, seconds."""
    cols = torch.linspace(0, args.t - 1, args.check_targets).round().long().unique().to(data.device)
    ref_dev = torch.device(args.ref_device)
    ref = StreamingRidgeCV(args.p, len(cols), args.alphas, args.folds, dtype="float64").to(ref_dev)
    t0 = time.perf_counter()
    for x, y, fold in data.batches(0, args.t, cols):
        ref.update(x.to(ref_dev, torch.float64), y.to(ref_dev, torch.float64), fold.to(ref_dev))
    ref.fit()
    return cols, ref, time.perf_counter() - t0


def check(run: Run, data: Data, args: argparse.Namespace, cols: torch.Tensor, ref: StreamingRidgeCV) -> str:
    """Alpha agreement and relative errors of ``run``'s fit against the float64 reference on the columns ``cols``."""
    ref_dev = ref.coef_.device
    coef = torch.empty(args.p, len(cols), dtype=torch.float64, device=ref_dev)
    alpha = torch.empty(len(cols), dtype=torch.float64, device=ref_dev)
    for start, model in run.models:
        inside = (cols >= start) & (cols < start + model.n_targets)
        coef[:, inside.to(ref_dev)] = model.coef_[:, cols[inside] - start].to(ref_dev, torch.float64)
        alpha[inside.to(ref_dev)] = model.alpha_[cols[inside] - start].to(ref_dev, torch.float64)

    def index(a: torch.Tensor) -> torch.Tensor:  # position in the grid (float32 alphas are rounded)
        return (a[None, :].log() - ref.alphas[:, None].log()).abs().argmin(0)

    idx = index(alpha)
    same = (idx == index(ref.alpha_)).double().mean().item()
    picked = ref.cv_sse_.gather(0, idx[None, :])[0]
    regret = ((picked - ref.cv_sse_.min(0).values) / ref.cv_sse_.min(0).values).max().item()
    rel_coef = ((coef - ref.coef_).abs().max() / ref.coef_.abs().max()).item()
    x0 = data.x[: args.batch].to(ref_dev, torch.float64)
    rel_pred = (torch.linalg.norm(x0 @ (coef - ref.coef_)) / torch.linalg.norm(x0 @ ref.coef_)).item()
    values, counts = torch.unique(ref.alpha_, return_counts=True)
    spread = ", ".join(f"{v:g}: {c}" for v, c in zip(values.tolist(), counts.tolist(), strict=True))
    return (f"{len(cols)} targets vs float64 on {ref_dev}: same alpha {same:.1%} (max float64 CV-SSE "
            f"excess of this variant's choice {regret:.1e}), max|coef - ref| / max|ref| = {rel_coef:.2e}, "
            f"||X (coef - ref)|| / ||X ref|| = {rel_pred:.2e}; float64 alphas: {spread}")


def matmul_flops(args: argparse.Namespace) -> tuple[float, float]:
    """Analytic matmul FLOPs of update and fit, summed over target chunks (see the module docstring)."""
    n, p, a = args.n, args.p, len(args.alphas)
    update = fit = 0.0
    for start, stop in chunks(args.t, args.target_chunk):
        t = stop - start
        update += 2.0 * n * p * (p + t)
        for k in range(args.folds):
            n_k = int((torch.arange(n) * args.folds // n == k).sum())
            quad = a * 2.0 * p * p * t + 4.0 * p**3 if n_k >= p // 2 else a * 2.0 * n_k * p * t + 2.0 * n_k * p * p
            fit += 4.0 * p * p * t + quad
        fit += 4.0 * p * p * t
    return update, fit


# ---------------------------------------------------------------------------------------------------- report
def check_device(device: torch.device, variants: tuple[str, ...]) -> None:
    """Fail clearly when the requested device cannot run (see :func:`harness.check_device`) the requested variants."""
    harness.check_device(device)
    if device.type == "cpu" and "tf32" in variants:
        raise SystemExit("--variants tf32 needs --device cuda (TF32 is a tensor-core mode of NVIDIA GPUs)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = harness.parse_device(args.device)
    cuda = device.type == "cuda"
    args.variants = tuple(args.variants or (VARIANTS if cuda else ("fp32",)))
    args.repeats = args.repeats or (3 if cuda else 1)
    args.warmup = (1 if cuda else 0) if args.warmup is None else args.warmup
    check_device(device, args.variants)
    if args.check_targets and args.ref_device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--ref_device {args.ref_device}: CUDA is not available; use --ref_device cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = harness.use_device(device, set_current=False)

    n, p, t, k = args.n, args.p, args.t, args.folds
    chunk = args.target_chunk or t
    stats_gb = k * (p * p + p * chunk) * 4 / 1e9
    flops_update, flops_fit = matmul_flops(args)
    harness.print_header(device, argv, cpu=platform.processor() or platform.machine())
    print(f"problem: n={n} trials, p={p} voxels, t={t} targets, {k} folds, alphas {list(args.alphas)}, per-target "
          f"alpha; update batches of {args.batch}; target chunks of {chunk} ({len(chunks(t, chunk))} chunk(s))")
    print(f"memory: statistics {stats_gb:.2f} GB per chunk in float32 (XᵀY {k * p * chunk * 4 / 1e9:.2f} GB), "
          f"(p, t) temporaries {p * chunk * 4 / 1e9:.2f} GB each")
    print(f"matmul FLOPs: update {flops_update / 1e12:.2f} TFLOP, fit {flops_fit / 1e12:.2f} TFLOP (eigh not counted)")
    print(f"timing: {args.warmup} warm-up run(s), median of {args.repeats} run(s) per variant; data generation not "
          "timed")

    t0 = time.perf_counter()
    data = Data(args, device)
    harness.sync(device)
    print(f"data: X generated in {time.perf_counter() - t0:.1f} s (spectrum floor {args.spectrum_floor:g}, noise/"
          f"signal {args.noise_min:g} ... {args.noise_max:g})")
    e_max, e_min = data.spectrum()
    tol32 = p * torch.finfo(torch.float32).eps * e_max
    print(f"standardised Gram (all trials): eigenvalues {e_min:.3g} ... {e_max:.3g}; the float32 resolution is "
          f"p x eps32 x max = {tol32:.3g} (a float32 Gram drops directions below it); "
          f"largest alpha {max(args.alphas):g}")
    if e_min < tol32:
        print("warning: the smallest eigenvalues are below the float32 resolution: fp32_gram32 truncates them, "
              "fp32/tf32 keep them with float32 rounding of XᵀY (raise --spectrum_floor to stay above it)")

    rows, notes = [], []
    ref = cols = None
    for variant in args.variants:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = variant == "tf32"
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            for _ in range(args.warmup):
                run_once(data, args, device, DTYPES[variant], keep=False)
            runs = [run_once(data, args, device, DTYPES[variant], keep=(i == args.repeats - 1))
                    for i in range(args.repeats)]
        except torch.cuda.OutOfMemoryError as err:
            notes.append(f"{variant}: out of GPU memory ({str(err).splitlines()[0]}); try --target_chunk")
            print(f"done {variant}: out of GPU memory", flush=True)
            torch.cuda.empty_cache()
            continue
        mem = f"{torch.cuda.max_memory_allocated(device) / 1e9:.1f}" if cuda else "n/a"
        med = {name: statistics.median(getattr(r, name) for r in runs) for name in ("update_s", "fit_s", "total_s")}
        rows.append((variant, med, [r.total_s for r in runs], mem))
        print(f"done {variant}: update {med['update_s']:.2f} s, fit {med['fit_s']:.2f} s, "
              f"total {med['total_s']:.2f} s, peak {mem} GB", flush=True)
        if args.check_targets:
            if ref is None:
                cols, ref, ref_s = reference(data, args)
                notes.append(f"float64 reference fit of {len(cols)} targets on {args.ref_device}: {ref_s:.1f} s")
            notes.append(f"check {variant}: " + check(runs[-1], data, args, cols, ref))
        del runs
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False

    print()
    harness.print_table_header([("variant", "<11"), ("update s", ">8"), ("fit s", ">8"), ("total s", ">8"),
                                ("total min-max s", ">15"), ("update TFLOP/s", ">14"), ("fit TFLOP/s", ">11"),
                                ("peak GB", ">7")])
    for variant, med, totals, mem in rows:
        harness.print_table_row([f"{variant:<11}", f"{med['update_s']:8.2f}", f"{med['fit_s']:8.2f}",
                                 f"{med['total_s']:8.2f}", f"{harness.min_max(totals):>15}",
                                 f"{flops_update / med['update_s'] / 1e12:14.2f}",
                                 f"{flops_fit / med['fit_s'] / 1e12:11.2f}", f"{mem:>7}"])
    print()
    for note in notes:
        print(note)
    harness.print_load_average("end")


if __name__ == "__main__":
    main()
