"""Identification, n-way, retrieval and bootstrap metrics against loop-based NumPy/SciPy references."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import pytest
import scipy.stats
import torch
from torchmetrics import Metric

from brain2img.metrics import NWayTopKAccuracy, RetrievalTopK, TwoWayIdentification, bootstrap_ci
from brain2img.metrics.bootstrap import paired_bootstrap_ci

M = TypeVar("M", bound=Metric)


def _feed(metric: M, *arrays: np.ndarray, ids: np.ndarray, batch: int = 7) -> M:
    """Update ``metric`` in batches from NumPy arrays (rows aligned with ``ids``)."""
    for start in range(0, len(ids), batch):
        sl = slice(start, start + batch)
        metric.update(*(torch.as_tensor(a[sl]) for a in arrays), torch.as_tensor(ids[sl], dtype=torch.int64))
    return metric


# ---------------------------------------------------------------- 2-way identification


def _two_way_reference(gt: np.ndarray, rec: np.ndarray) -> np.ndarray:
    n = len(gt)
    r = np.corrcoef(gt, rec)[:n, n:]
    scores = np.zeros(n)
    for j in range(n):
        wins = 0
        for i in range(n):
            if i != j and r[i, j] < r[j, j]:
                wins += 1
        scores[j] = wins / (n - 1)
    return scores


def test_two_way_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    gt = rng.standard_normal((40, 16))
    rec = gt + 1.5 * rng.standard_normal((40, 16))
    ids = rng.permutation(40) + 100
    metric = _feed(TwoWayIdentification(), gt, rec, ids=ids)
    order = np.argsort(ids)
    expected = _two_way_reference(gt[order], rec[order])
    assert 0.6 < expected.mean() < 0.99  # informative, not saturated
    np.testing.assert_allclose(metric.per_sample().numpy(), expected, atol=1e-6)
    assert float(metric.compute()) == pytest.approx(expected.mean(), abs=1e-6)
    np.testing.assert_array_equal(metric.sample_ids().numpy(), np.sort(ids))


def test_two_way_facts() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((30, 8))
    ids = np.arange(30)
    assert float(_feed(TwoWayIdentification(), feats, feats, ids=ids).compute()) == 1.0
    two = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    assert float(_feed(TwoWayIdentification(), two, two + 0.1, ids=np.arange(2)).compute()) == 1.0
    assert float(_feed(TwoWayIdentification(), two, two[::-1].copy(), ids=np.arange(2)).compute()) == 0.0
    chance = [
        float(
            _feed(
                TwoWayIdentification(), rng.standard_normal((100, 8)), rng.standard_normal((100, 8)), ids=np.arange(100)
            ).compute()
        )
        for _ in range(5)
    ]
    assert np.mean(chance) == pytest.approx(0.5, abs=0.04)


def test_two_way_needs_two_samples_and_matching_shapes() -> None:
    metric = TwoWayIdentification()
    metric.update(torch.randn(1, 4), torch.randn(1, 4), torch.tensor([3]))
    metric.update(torch.randn(1, 4), torch.randn(1, 4), torch.tensor([3]))  # same id again: still one sample
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.randn(2, 4), torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        metric.update(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0.0, 1.0]))


def test_duplicates_and_order_do_not_change_values() -> None:
    rng = np.random.default_rng(2)
    n = 25
    gt, rec = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    logits_gt, logits_rec = rng.standard_normal((n, 100)), rng.standard_normal((n, 100))
    ids = np.arange(n)
    dup = np.concatenate([rng.permutation(n), [3, 17, 3]])  # shuffled, with padding-style repeats

    def run(order: np.ndarray, batch: int) -> tuple[list[float], list[np.ndarray]]:
        metrics = [
            _feed(TwoWayIdentification(), gt[order], rec[order], ids=ids[order], batch=batch),
            _feed(
                NWayTopKAccuracy(n_way=10, num_trials=20),
                logits_rec[order],
                logits_gt[order],
                ids=ids[order],
                batch=batch,
            ),
            _feed(RetrievalTopK(batch_size=10, num_repeats=5), rec[order], gt[order], ids=ids[order], batch=batch),
        ]
        values = [float(m.compute()) for m in metrics[:2]] + [float(v) for v in metrics[2].compute().values()]
        samples = [m.per_sample().numpy() for m in metrics[:2]] + [v.numpy() for v in metrics[2].per_sample().values()]
        return values, samples

    base_values, base_samples = run(ids, batch=25)
    dup_values, dup_samples = run(dup, batch=4)
    assert dup_values == base_values
    for a, b in zip(base_samples, dup_samples, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- n-way top-k


def _nway_simulation(
    pred: np.ndarray, gt_class: int, n_way: int, top_k: int, trials: int, rng: np.random.Generator
) -> float:
    """Explicit protocol: draw n_way - 1 distinct other classes per trial and rank the GT class among them."""
    others = np.array([c for c in range(len(pred)) if c != gt_class])
    correct = 0
    for _ in range(trials):
        candidates = np.concatenate([[gt_class], rng.choice(others, n_way - 1, replace=False)])
        ranking = sorted(candidates, key=lambda c: -pred[c])
        correct += gt_class in ranking[:top_k]
    return correct / trials


@pytest.mark.parametrize("top_k", [1, 3])
def test_nway_matches_explicit_draw_simulation(top_k: int) -> None:
    rng = np.random.default_rng(3)
    num_classes, n_way = 60, 10
    gt_logits = rng.standard_normal((6, num_classes))
    pred = gt_logits + 1.2 * rng.standard_normal((6, num_classes))
    metric = _feed(
        NWayTopKAccuracy(n_way=n_way, top_k=top_k, num_trials=4000, seed=5), pred, gt_logits, ids=np.arange(6)
    )
    exact = _feed(NWayTopKAccuracy(n_way=n_way, top_k=top_k, num_trials=None), pred, gt_logits, ids=np.arange(6))
    sim = np.array(
        [_nway_simulation(p, int(np.argmax(g)), n_way, top_k, 4000, rng) for p, g in zip(pred, gt_logits, strict=True)]
    )
    assert 0.1 < sim.mean() < 0.95
    np.testing.assert_allclose(metric.per_sample().numpy(), sim, atol=0.04)  # two 4000-trial Monte Carlo estimates
    np.testing.assert_allclose(exact.per_sample().numpy(), sim, atol=0.03)
    if top_k == 1:  # closed form: none of the m classes above the GT class is drawn
        m = (pred > pred[np.arange(6), gt_logits.argmax(1)][:, None]).sum(1)
        closed = [math.comb(num_classes - 1 - mi, n_way - 1) / math.comb(num_classes - 1, n_way - 1) for mi in m]
        np.testing.assert_allclose(exact.per_sample().numpy(), closed, atol=1e-9)


def test_nway_facts() -> None:
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((50, 1000))
    assert float(_feed(NWayTopKAccuracy(), logits, logits, ids=np.arange(50)).compute()) == 1.0
    chance = _feed(
        NWayTopKAccuracy(n_way=50, num_trials=200),
        rng.standard_normal((300, 1000)),
        logits[rng.integers(0, 50, 300)],
        ids=np.arange(300),
    )
    assert float(chance.compute()) == pytest.approx(1 / 50, abs=0.006)
    top5 = _feed(
        NWayTopKAccuracy(n_way=50, top_k=5, num_trials=None),
        rng.standard_normal((300, 1000)),
        logits[rng.integers(0, 50, 300)],
        ids=np.arange(300),
    )
    assert float(top5.compute()) == pytest.approx(5 / 50, abs=0.015)


def test_nway_draws_are_seeded_per_id() -> None:
    rng = np.random.default_rng(5)
    pred, gt = rng.standard_normal((12, 100)), rng.standard_normal((12, 100))
    a = _feed(NWayTopKAccuracy(n_way=20, num_trials=30, seed=1), pred, gt, ids=np.arange(12), batch=12)
    perm = rng.permutation(12)
    b = _feed(NWayTopKAccuracy(n_way=20, num_trials=30, seed=1), pred[perm], gt[perm], ids=perm, batch=5)
    c = _feed(NWayTopKAccuracy(n_way=20, num_trials=30, seed=2), pred, gt, ids=np.arange(12), batch=12)
    np.testing.assert_array_equal(a.per_sample().numpy(), b.per_sample().numpy())
    assert not np.array_equal(a.per_sample().numpy(), c.per_sample().numpy())


def test_nway_validates_input() -> None:
    with pytest.raises(ValueError, match="top_k"):
        NWayTopKAccuracy(n_way=5, top_k=6)
    metric = NWayTopKAccuracy(n_way=50)
    with pytest.raises(ValueError, match="fewer than n_way"):
        metric.update(torch.randn(2, 10), torch.randn(2, 10), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        metric.update(torch.randn(2, 100), torch.randn(2, 100), torch.tensor([0, -1]))
    with pytest.raises(RuntimeError, match="no samples"):
        metric.per_sample()


# ---------------------------------------------------------------- retrieval


def _retrieval_reference(
    brain: np.ndarray, image: np.ndarray, batch: int, repeats: int, top_k: int, seed: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Loop-based: per subset, each query ranks all candidates by cosine; hit if its match is in the top k."""
    n = len(brain)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    rng = np.random.default_rng(seed)
    subsets = [np.arange(n)] if n <= batch else [rng.choice(n, batch, replace=False) for _ in range(repeats)]
    rates = {"brain_to_image": [], "image_to_brain": []}
    hits = {d: np.zeros(n) for d in rates}
    seen = np.zeros(n)
    for subset in subsets:
        for direction, (queries, keys) in {"brain_to_image": (brain, image), "image_to_brain": (image, brain)}.items():
            count = 0
            for q in subset:
                sims = {k: cos(queries[q], keys[k]) for k in subset}
                better = sum(1 for k in subset if sims[k] > sims[q])
                hit = better < top_k
                count += hit
                hits[direction][q] += hit
            rates[direction].append(count / len(subset))
        seen[subset] += 1
    with np.errstate(invalid="ignore"):
        per_query = {d: np.where(seen > 0, h / np.maximum(seen, 1), np.nan) for d, h in hits.items()}
    return {d: float(np.mean(r)) for d, r in rates.items()}, per_query


@pytest.mark.parametrize(("n", "top_k"), [(60, 1), (60, 3), (15, 1)])
def test_retrieval_matches_loop_reference(n: int, top_k: int) -> None:
    rng = np.random.default_rng(6)
    image = rng.standard_normal((n, 12))
    brain = image + 1.0 * rng.standard_normal((n, 12)) + 2.0 * rng.standard_normal((1, 12))  # shared offset: asymmetry
    ids = rng.permutation(n) * 3
    metric = _feed(RetrievalTopK(batch_size=20, num_repeats=6, top_k=top_k, seed=11), brain, image, ids=ids)
    order = np.argsort(ids)
    expected, per_query = _retrieval_reference(brain[order], image[order], 20, 6, top_k, 11)
    values = metric.compute()
    for direction, value in expected.items():
        assert float(values[direction]) == pytest.approx(value, abs=1e-12)
        np.testing.assert_allclose(metric.per_sample()[direction].numpy(), per_query[direction], atol=1e-12)
    assert expected["brain_to_image"] != expected["image_to_brain"]  # the test distinguishes the directions
    if n > 20:
        assert np.isnan(per_query["brain_to_image"]).any()  # some queries never drawn: NaN, not 0


def test_retrieval_direction_matches_mindeye_code() -> None:
    """MindEye's code-"fwd" (reported as image retrieval) = each image ranks the brain embeddings = image_to_brain."""
    rng = np.random.default_rng(7)
    image = rng.standard_normal((40, 10))
    brain = image + 1.2 * rng.standard_normal((40, 10)) + 2.0 * rng.standard_normal((1, 10))

    def batchwise_cosine_similarity(z: np.ndarray, b: np.ndarray) -> np.ndarray:  # MindEye utils, transposed inside
        return (b @ z.T) / np.outer(np.linalg.norm(b, axis=1), np.linalg.norm(z, axis=1))

    fwd = batchwise_cosine_similarity(brain, image)
    bwd = batchwise_cosine_similarity(image, brain)
    labels = np.arange(40)
    values = _feed(RetrievalTopK(batch_size=300), brain, image, ids=labels).compute()
    assert float(values["image_to_brain"]) == pytest.approx(np.mean(fwd.argmax(1) == labels))
    assert float(values["brain_to_image"]) == pytest.approx(np.mean(bwd.argmax(1) == labels))
    assert float(values["image_to_brain"]) != float(values["brain_to_image"])


def test_retrieval_facts() -> None:
    rng = np.random.default_rng(8)
    emb = rng.standard_normal((1000, 32))
    perfect = _feed(RetrievalTopK(), emb, emb, ids=np.arange(1000), batch=250).compute()
    assert float(perfect["brain_to_image"]) == 1.0 and float(perfect["image_to_brain"]) == 1.0
    shuffled = [
        _feed(RetrievalTopK(seed=s), emb[rng.permutation(1000)], emb, ids=np.arange(1000), batch=500).compute()
        for s in range(5)
    ]
    for direction in ("brain_to_image", "image_to_brain"):
        assert np.mean([float(v[direction]) for v in shuffled]) == pytest.approx(1 / 300, abs=0.0015)


def test_retrieval_over_the_whole_set_matches_numpy() -> None:
    """The all-test-set variant (MindEye's 982-way): one argmax over every candidate, both directions."""
    rng = np.random.default_rng(10)
    image = rng.standard_normal((450, 16))
    brain = image + 1.5 * rng.standard_normal((450, 16)) + 1.0 * rng.standard_normal((1, 16))
    ids = rng.permutation(450)
    metric = _feed(RetrievalTopK(batch_size=300, num_repeats=5), brain, image, ids=ids)
    order = np.argsort(ids)
    b = brain[order] / np.linalg.norm(brain[order], axis=1, keepdims=True)
    i = image[order] / np.linalg.norm(image[order], axis=1, keepdims=True)
    sim = b @ i.T
    whole = metric.compute_all()
    assert float(whole["brain_to_image"]) == pytest.approx(np.mean(sim.argmax(1) == np.arange(450)))
    assert float(whole["image_to_brain"]) == pytest.approx(np.mean(sim.argmax(0) == np.arange(450)))
    subsets = metric.compute()
    assert float(whole["brain_to_image"]) < float(subsets["brain_to_image"])  # 450 candidates are harder than 300


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(9)
    scores = rng.beta(2, 5, size=200)
    low, high = bootstrap_ci(torch.from_numpy(scores), n_boot=4000, alpha=0.05, seed=1)
    ref = scipy.stats.bootstrap((scores,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95, rng=2)
    se = scores.std(ddof=1) / np.sqrt(len(scores))
    assert low < scores.mean() < high
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.15 * se)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.15 * se)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_ci(scores, n_boot=500, seed=3) == bootstrap_ci(scores, n_boot=500, seed=3)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bootstrap_ci(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.ones(3), alpha=1.5)


def test_paired_bootstrap_resamples_pairs_and_matches_scipy_paired() -> None:
    rng = np.random.default_rng(4)
    shared = rng.normal(size=300)  # a per-stimulus difficulty both methods share
    a, b = shared + 0.1 + 0.2 * rng.normal(size=300), shared + 0.2 * rng.normal(size=300)
    mean, low, high = paired_bootstrap_ci(a, b, n_boot=4000, seed=1)
    ref = scipy.stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, n_resamples=4000,
                                method="percentile", rng=2).confidence_interval
    se = (a - b).std(ddof=1) / np.sqrt(300)
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert low == pytest.approx(ref.low, abs=0.15 * se) and high == pytest.approx(ref.high, abs=0.15 * se)
    unpaired = bootstrap_ci(a, seed=1)[1] - bootstrap_ci(a, seed=1)[0]
    assert high - low < 0.5 * unpaired  # pairing removes the shared difficulty from the interval
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="pair up"):
        paired_bootstrap_ci(a, b[:10])
