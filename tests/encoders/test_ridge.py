"""StreamingRidgeCV against scikit-learn: fixed alpha, K-fold alpha choice, streaming, DDP, state_dict, bad inputs."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold, PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from brain2img.encoders.ridge import StreamingRidgeCV
from brain2img.encoders.ridge_stats import kfold_assign
from tests.builders.small import free_port

ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
FLAGS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny problems: one BLAS thread each for torch and numpy, so their thread pools do not fight on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def make_data(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with uneven scales and non-zero means; targets with a planted signal and per-target noise levels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.3, 3.0, p) + rng.normal(size=p) * 2
    w = rng.normal(size=(p, t)) * (rng.uniform(size=p) < 0.3)[:, None]
    noise = np.geomspace(0.1, 30.0, t)
    return x, x @ w + rng.normal(size=(n, t)) * noise + rng.normal(size=t) * 5


def sklearn_fit(x, y, alpha, fit_intercept: bool, standardize: bool):
    """Reference coef (p, t) and intercept (t) in original x units; ``alpha`` may be per target."""
    ridge = Ridge(alpha=alpha, fit_intercept=fit_intercept)
    if standardize:
        pipe = make_pipeline(StandardScaler(), ridge).fit(x, y)
        scaler = pipe[0]
        coef = ridge.coef_.T / scaler.scale_[:, None]
        return coef, np.asarray(ridge.intercept_) - scaler.mean_ @ coef
    ridge.fit(x, y)
    return ridge.coef_.T, np.broadcast_to(np.asarray(ridge.intercept_, dtype=float), (y.shape[1],))


def sklearn_predict(model, x):
    return model.predict(x).reshape(len(x), -1)


def fitted(x, y, fold, alphas=ALPHAS, **kw) -> StreamingRidgeCV:
    model = StreamingRidgeCV(x.shape[1], y.shape[1], alphas=alphas, n_folds=int(fold.max()) + 1, **kw)
    model.update(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(fold))
    return model.fit()


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("fit_intercept,standardize", FLAGS)
@pytest.mark.parametrize("n,p", [(200, 30), (40, 90)])  # p > n included
def test_fixed_alpha_matches_sklearn(n, p, fit_intercept, standardize):
    x, y = make_data(n, p, 5, seed=n + p)
    model = fitted(x, y, np.arange(n) % 4, alphas=(2.5,), fit_intercept=fit_intercept, standardize=standardize)
    coef, intercept = sklearn_fit(x, y, 2.5, fit_intercept, standardize)
    assert rel_err(model.coef_.numpy(), coef) < 1e-4
    assert rel_err(model.intercept_.numpy(), intercept) < 1e-4 or np.abs(intercept).max() < 1e-9
    pred = model(torch.from_numpy(x)).numpy()
    assert rel_err(pred, x @ coef + intercept) < 1e-4


def kfold_reference(x, y, fold, fit_intercept, standardize):
    """Held-out SSE (n_alphas, t) by looping sklearn over PredefinedSplit folds and alphas."""
    sse = np.zeros((len(ALPHAS), y.shape[1]))
    for train, test in PredefinedSplit(fold).split():
        for i, alpha in enumerate(ALPHAS):
            ridge = Ridge(alpha=alpha, fit_intercept=fit_intercept)
            model = make_pipeline(StandardScaler(), ridge) if standardize else ridge
            model.fit(x[train], y[train])
            sse[i] += ((y[test] - sklearn_predict(model, x[test])) ** 2).sum(0)
    return sse


@pytest.mark.parametrize("fit_intercept,standardize", FLAGS)
@pytest.mark.parametrize("n,p", [(160, 40), (100, 90)])  # held-out folds larger / smaller than p/2; p > n_train
def test_alpha_selection_matches_sklearn_kfold_loop(n, p, fit_intercept, standardize):
    t = 12
    x, y = make_data(n, p, t, seed=3)
    fold = np.random.default_rng(1).integers(0, 5, n)  # unequal fold sizes
    model = fitted(x, y, fold, fit_intercept=fit_intercept, standardize=standardize)
    ref_sse = kfold_reference(x, y, fold, fit_intercept, standardize)
    assert rel_err(model.cv_sse_.numpy(), ref_sse) < 1e-8
    ref_alpha = np.asarray(ALPHAS)[ref_sse.argmin(0)]
    np.testing.assert_array_equal(model.alpha_.numpy(), ref_alpha)
    assert len(set(ref_alpha.tolist())) >= 2, "test data should make targets choose different alphas"
    coef, intercept = sklearn_fit(x, y, ref_alpha, fit_intercept, standardize)
    assert rel_err(model.coef_.numpy(), coef) < 1e-4
    assert rel_err(model.intercept_.numpy(), intercept) < 1e-4 or np.abs(intercept).max() < 1e-9


def test_single_target_matches_ridgecv_equal_folds():
    n, p = 150, 25
    x, y = make_data(n, p, 8, seed=5)
    fold = np.random.default_rng(2).permutation(np.repeat(np.arange(5), n // 5))
    chosen = set()
    for j in range(y.shape[1]):
        yj = y[:, j : j + 1]
        model = fitted(x, yj, fold, standardize=False)
        ref = RidgeCV(alphas=ALPHAS, cv=PredefinedSplit(fold), scoring="neg_mean_squared_error").fit(x, yj[:, 0])
        assert float(model.alpha_[0]) == ref.alpha_
        assert rel_err(model.coef_.numpy()[:, 0], ref.coef_) < 1e-4
        assert abs(float(model.intercept_[0]) - ref.intercept_) < 1e-4 * max(1.0, abs(ref.intercept_))
        chosen.add(ref.alpha_)
    assert len(chosen) >= 2


def test_streaming_small_batches_equal_one_batch():
    n, p, t = 300, 20, 7
    x, y = make_data(n, p, t, seed=7)
    fold = np.arange(n) % 5
    whole = fitted(x, y, fold)
    streamed = StreamingRidgeCV(p, t, alphas=ALPHAS)
    order = np.random.default_rng(0).permutation(n)
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(1, n), 40, replace=False))
    for idx in np.split(order, cuts):
        streamed.update(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), torch.from_numpy(fold[idx]))
    streamed.fit()
    for name in ("n", "sx", "xtx", "xty", "syy"):
        torch.testing.assert_close(getattr(streamed, name), getattr(whole, name), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(streamed.alpha_, whole.alpha_)
    torch.testing.assert_close(streamed.coef_, whole.coef_, rtol=1e-10, atol=1e-12)


def _ddp_worker(rank: int, world: int, init: str, out: str, x, y, fold) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = StreamingRidgeCV(x.shape[1], y.shape[1], alphas=ALPHAS)
        part = slice(rank, None, world)
        model.update(x[part], y[part], fold[part])
        model.all_reduce()
        model.fit()
        torch.save({"coef": model.coef_, "alpha": model.alpha_, "n": model.n}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()



def test_ddp_two_processes_equal_single_process():
    x, y = (torch.from_numpy(a) for a in make_data(120, 15, 4, seed=11))
    fold = torch.arange(120) % 5
    single = StreamingRidgeCV(15, 4, alphas=ALPHAS)
    single.all_reduce()  # no-op without a process group
    single.update(x, y, fold)
    single.fit()
    with tempfile.TemporaryDirectory() as out:
        init = f"tcp://127.0.0.1:{free_port()}"
        mp.spawn(_ddp_worker, args=(2, init, out, x, y, fold), nprocs=2, join=True)
        for rank in range(2):
            res = torch.load(os.path.join(out, f"rank{rank}.pt"))
            torch.testing.assert_close(res["n"], single.n)
            torch.testing.assert_close(res["alpha"], single.alpha_)
            torch.testing.assert_close(res["coef"], single.coef_, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trip():
    x, y = make_data(100, 12, 3, seed=13)
    model = fitted(x, y, np.arange(100) % 5)
    clone = StreamingRidgeCV(12, 3, alphas=ALPHAS)
    assert not clone.is_fitted
    clone.load_state_dict(model.state_dict())
    assert clone.is_fitted
    xt = torch.from_numpy(x[:7])
    torch.testing.assert_close(clone(xt), model(xt), rtol=0, atol=0)
    torch.testing.assert_close(clone.cv_sse_, model.cv_sse_, rtol=0, atol=0)
    out32 = clone(xt.float())
    assert out32.dtype == torch.float32 and out32.shape == (7, 3)


def test_float32_close_to_float64():
    x, y = make_data(400, 20, 6, seed=17)
    x = (x - x.mean(0)) / x.std(0)  # float32 sums are only safe on roughly centred data (documented)
    fold = np.arange(400) % 5
    m64 = fitted(x, y, fold, alphas=(1e-3, 1.0, 100.0))
    m32 = fitted(x.astype(np.float32), y.astype(np.float32), fold, alphas=(1e-3, 1.0, 100.0), dtype="float32")
    assert m32.coef_.dtype == torch.float32
    assert rel_err(m32.coef_.numpy(), m64.coef_.numpy()) < 1e-3


def test_kfold_assign_groups_ids_like_kfold():
    ids = torch.tensor([7, 3, 7, 9, 1, 3, 4, 8, 8, 2, 5, 6, 1, 0])
    fold = kfold_assign(ids, 3)
    order = list(dict.fromkeys(ids.tolist()))  # unique ids, first-appearance order
    expected = {}
    for k, (_, test) in enumerate(KFold(3).split(order)):
        expected.update({order[i]: k for i in test})
    assert fold.tolist() == [expected[i] for i in ids.tolist()]


def test_bad_inputs_raise_clear_errors():
    model = StreamingRidgeCV(4, 2, alphas=(1.0,), n_folds=2)
    x, y, fold = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64), torch.arange(6) % 2
    with pytest.raises(RuntimeError, match="before predicting"):
        model(x)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x has non-finite"):
        model.update(bad, y, fold)
    with pytest.raises(ValueError, match=r"\(B, 4\).*got \(6, 5\)"):
        model.update(torch.randn(6, 5), y, fold)
    with pytest.raises(ValueError, match="fold values must be in"):
        model.update(x, y, fold + 1)
    with pytest.raises(ValueError, match="same batch size"):
        model.update(x, y[:5], fold)
    with pytest.raises(RuntimeError, match=r"folds \[0, 1\] have no samples"):
        model.fit()
    with pytest.raises(ValueError, match="alphas"):
        StreamingRidgeCV(4, 2, alphas=(0.0, 1.0))
    model.update(x, y, fold)
    model.fit()
    with pytest.raises(ValueError, match="expected 4 features.*got 3"):
        model(torch.randn(2, 3))


def _ill_conditioned(noise: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """40 features that are mixtures of 8 latents plus a little independent noise: Gram eigenvalues span ~1e6."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 8))
    x = latent @ rng.normal(size=(8, 40)) + noise * rng.normal(size=(2000, 40))
    y = x @ rng.normal(size=(40, 5)) + 0.1 * rng.normal(size=(2000, 5))
    return x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)


def test_float64_gram_keeps_directions_a_float32_gram_drops():
    """At tiny alphas a float32 Gram truncates the eigenbasis (and says so); the default float64 Gram keeps it."""
    x, y = _ill_conditioned()
    fold = np.arange(len(x)) % 5
    kw = {"alphas": (1e-6, 1e-4), "fit_intercept": False, "standardize": True}
    ref = fitted(x, y, fold, **kw).coef_.numpy()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    with pytest.warns(UserWarning, match="keep float32 rounding"):
        mixed = fitted(x32, y32, fold, dtype="float32", **kw)
    with pytest.warns(UserWarning, match="truncated least squares"):
        truncated = fitted(x32, y32, fold, dtype="float32", gram_dtype="float32", **kw)
    assert mixed.xtx.dtype == torch.float64 and mixed.xty.dtype == torch.float32
    assert rel_err(mixed.coef_.double().numpy(), ref) < 0.1
    assert rel_err(truncated.coef_.double().numpy(), ref) > 0.5


def test_float32_on_well_conditioned_data_does_not_warn():
    x, y = _ill_conditioned(noise=1.0)
    fold = np.arange(len(x)) % 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m32 = fitted(x.astype(np.float32), y.astype(np.float32), fold, dtype="float32", gram_dtype="float32")
    assert rel_err(m32.coef_.double().numpy(), fitted(x, y, fold).coef_.numpy()) < 1e-3
