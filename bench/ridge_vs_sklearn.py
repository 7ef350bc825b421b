"""Benchmark: StreamingRidgeCV (K-fold, per-target alpha) against scikit-learn on the same random data.

Three timings in one run:
  1. ``StreamingRidgeCV``: ``update`` in batches + ``fit`` (K folds, per-target alpha, exact held-out SSE, refit).
  2. ``sklearn RidgeCV(alphas, alpha_per_target=True)``: sklearn's fast path (efficient leave-one-out/GCV), run on
     X standardised once on all data (a different, cheaper protocol: LOO instead of K-fold).
  3. the like-for-like sklearn protocol: loop over the K folds (StandardScaler fitted on each training part) and the
     alphas with multi-target ``Ridge``, sum held-out squared errors, pick the per-target alpha, refit ``Ridge``
     once per distinct chosen alpha on all data.

Agreement printed: max relative coefficient difference of StreamingRidgeCV vs sklearn ``Ridge`` refitted at the
alphas StreamingRidgeCV chose, and how often the chosen alpha equals the K-fold loop's (and the LOO fast path's).

Example: ``.venv/bin/python bench/ridge_vs_sklearn.py --n 2000 --p 1500 --t 2000`` (add ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import sklearn
import torch
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from brain2img.encoders.ridge import StreamingRidgeCV  # noqa: E402

ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="samples (trials)")
    ap.add_argument("--p", type=int, default=1500, help="features (voxels)")
    ap.add_argument("--t", type=int, default=2000, help="targets")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--batch-size", type=int, default=256, help="StreamingRidgeCV update batch size")
    ap.add_argument("--device", default="cpu", help="torch device of StreamingRidgeCV (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="StreamingRidgeCV dtype")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch and numpy/scipy BLAS (default: library defaults)")
    ap.add_argument("--repeats", type=int, default=1, help="time each method this many times, report the fastest")
    ap.add_argument("--skip-kfold-loop", action="store_true", help="skip the (slowest) sklearn K-fold loop")
    return ap.parse_args(argv)


def make_data(n: int, p: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-like X (shared latent factors, uneven scales, offsets) and targets with a planted sparse signal."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 20))
    x = factors @ rng.normal(size=(20, p)) * 0.5 + rng.normal(size=(n, p))
    x = x * rng.uniform(0.5, 2.0, p) + rng.normal(size=p)
    w = rng.normal(size=(p, t)) * (rng.uniform(size=(p, t)) < 0.05)
    signal = x @ w
    noise = rng.normal(size=(n, t)) * signal.std(0) * np.geomspace(0.3, 10.0, t)  # SNR varies across targets
    return x, signal + noise


def kfold_folds(n: int, k: int) -> np.ndarray:
    """Contiguous blocks like sklearn KFold without shuffle."""
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k), sizes)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_streaming(x, y, fold, args) -> tuple[StreamingRidgeCV, float, float]:
    model = StreamingRidgeCV(x.shape[1], y.shape[1], args.alphas, args.folds, dtype=args.dtype).to(args.device)
    sync(args.device)
    t0 = time.perf_counter()
    for i in range(0, len(x), args.batch_size):
        sl = slice(i, i + args.batch_size)
        model.update(torch.from_numpy(x[sl]), torch.from_numpy(y[sl]), torch.from_numpy(fold[sl]))
    sync(args.device)
    t1 = time.perf_counter()
    model.fit()
    sync(args.device)
    return model, t1 - t0, time.perf_counter() - t1


def run_loo(x, y, alphas) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    z = StandardScaler().fit_transform(x)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(z, y)
    return np.asarray(ref.alpha_), time.perf_counter() - t0


def run_kfold_loop(x, y, fold, alphas) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    sse = np.zeros((len(alphas), y.shape[1]))
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        scaler = StandardScaler().fit(x[tr])
        ztr, zte = scaler.transform(x[tr]), scaler.transform(x[te])
        for i, alpha in enumerate(alphas):
            pred = Ridge(alpha=alpha).fit(ztr, y[tr]).predict(zte)
            sse[i] += ((y[te] - pred) ** 2).sum(0)
    chosen = np.asarray(alphas)[sse.argmin(0)]
    refit_at_alphas(x, y, chosen)
    return chosen, time.perf_counter() - t0


def best_of(repeats: int, fn, *fn_args) -> tuple[np.ndarray, float]:
    """Run ``fn`` ``repeats`` times; its result and the fastest of its timings."""
    results = [fn(*fn_args) for _ in range(repeats)]
    return results[0][0], min(r[1] for r in results)


def refit_at_alphas(x, y, alpha_per_target) -> np.ndarray:
    """sklearn StandardScaler + Ridge on all data, one multi-target fit per distinct alpha; coef (p, t) in x units."""
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    coef = np.zeros((x.shape[1], y.shape[1]))
    for alpha in np.unique(alpha_per_target):
        cols = alpha_per_target == alpha
        coef[:, cols] = Ridge(alpha=alpha).fit(z, y[:, cols]).coef_.reshape(-1, x.shape[1]).T
    return coef / scaler.scale_[:, None]


def machine(device: str) -> str:
    dev = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return (f"{platform.platform()} | {platform.processor() or platform.machine()} | os.cpu_count()={os.cpu_count()}"
            f" | torch {torch.__version__} threads={torch.get_num_threads()} | BLAS threads "
            f"{sorted({lib['num_threads'] for lib in threadpool_info()})} | numpy {np.__version__} | "
            f"sklearn {sklearn.__version__} | device {dev}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.alphas = tuple(args.alphas)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)
    print("command:", "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:])))
    print("machine:", machine(args.device))
    print(f"sizes: n={args.n} p={args.p} t={args.t} folds={args.folds} alphas={len(args.alphas)} "
          f"dtype={args.dtype} batch={args.batch_size} "
          f"timings: fastest of {args.repeats}")
    x, y = make_data(args.n, args.p, args.t, args.seed)
    fold = kfold_folds(args.n, args.folds)

    runs = [run_streaming(x, y, fold, args) for _ in range(args.repeats)]
    model, t_update, t_fit = min(runs, key=lambda r: r[1] + r[2])
    ours = model.alpha_.cpu().numpy()
    loo_alpha, t_loo = best_of(args.repeats, run_loo, x, y, args.alphas)
    rows = [("StreamingRidgeCV update+fit (K-fold)", t_update + t_fit),
            (f"  of which update ({-(-args.n // args.batch_size)} batches)", t_update), ("  of which fit", t_fit),
            ("sklearn RidgeCV alpha_per_target (LOO/GCV)", t_loo)]
    kfold_alpha = None
    if not args.skip_kfold_loop:
        kfold_alpha, t_kfold = best_of(args.repeats, run_kfold_loop, x, y, fold, args.alphas)
        rows.append((f"sklearn {args.folds}-fold loop (Ridge x alphas x folds)", t_kfold))

    total = t_update + t_fit
    print(f"\n| {'method':<46} | {'seconds':>8} | {'/ StreamingRidgeCV':>18} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 20}|")
    for name, sec in rows:
        print(f"| {name:<46} | {sec:8.2f} | {sec / total:18.2f} |")

    ref_coef = refit_at_alphas(x, y, ours)
    coef = model.coef_.double().cpu().numpy()
    rel = np.abs(coef - ref_coef).max() / np.abs(ref_coef).max()
    print(f"\nagreement: max |coef - sklearn Ridge refit at our alphas| / max|coef| = {rel:.2e}")
    if kfold_alpha is not None:
        print(f"agreement: chosen alpha == sklearn {args.folds}-fold loop choice for "
              f"{np.mean(ours == kfold_alpha):.1%} of {args.t} targets")
    print(f"info: chosen alpha == sklearn LOO/GCV choice (different protocol) for {np.mean(ours == loo_alpha):.1%}")
    values, counts = np.unique(ours, return_counts=True)
    print("info: our chosen alphas:", ", ".join(f"{v:g}: {c}" for v, c in zip(values, counts, strict=True)))


if __name__ == "__main__":
    main()
