"""Top-k retrieval between brain and image embeddings in random subsets (MindEye protocol)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from brain2img.metrics._dedup import IdDeduplicatedMetric, check_ids

DIRECTIONS = ("brain_to_image", "image_to_brain")


class RetrievalTopK(IdDeduplicatedMetric):
    """Top-k retrieval accuracy in both directions, averaged over seeded random subsets (chance ``top_k / batch``).

    For each of ``num_repeats`` subsets of ``batch_size`` distinct samples (``np.random.default_rng(seed).choice(N,
    batch_size, replace=False)`` per repeat, as MindEye2 ``final_evaluations``; with ``N <= batch_size`` all samples
    are used once), with ``S[i, j] = cos(brain_i, image_j)``:

    - ``brain_to_image``: each brain embedding ranks the subset's images; a hit when its own image is in its top k.
    - ``image_to_brain``: each image ranks the subset's brain embeddings; a hit when its own brain embedding is in
      its top k.

    The value per direction is the mean over repeats of the subset's hit rate. Ties count in favour of the correct
    match (MindEye uses ``argmax``, which breaks ties by position).

    Which is which in MindEye: its ``batchwise_cosine_similarity`` transposes, so the code's "fwd" similarity
    (reported as **image retrieval**, e.g. 93.6% in MindEye Table 1) lets each *image* rank the brain embeddings:
    that is ``image_to_brain`` here. The code's "bwd" (reported as **brain retrieval**, 90.1%) is
    ``brain_to_image`` here, although the paper's prose describes image retrieval as a brain query finding its image.
    To compare with published numbers, put ``image_to_brain`` beside "image retrieval".

    Args:
        batch_size: subset size (300 in MindEye).
        num_repeats: number of subsets (30 in MindEye).
        top_k: a query is a hit when its match ranks within the top ``top_k``.
        seed: seeds the subset draws (MindEye2 uses 42).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self, batch_size: int = 300, num_repeats: int = 30, top_k: int = 1, seed: int = 42, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if batch_size < 2:
            raise ValueError(f"RetrievalTopK: `batch_size` must be >= 2, got {batch_size}")
        if num_repeats < 1:
            raise ValueError(f"RetrievalTopK: `num_repeats` must be >= 1, got {num_repeats}")
        if top_k < 1:
            raise ValueError(f"RetrievalTopK: `top_k` must be >= 1, got {top_k}")
        self.batch_size = batch_size
        self.num_repeats = num_repeats
        self.top_k = top_k
        self.seed = seed
        self._add_row_states("brain_emb", "image_emb")

    def update(self, brain_emb: Tensor, image_emb: Tensor, ids: Tensor) -> None:
        """Add a batch.

        Args:
            brain_emb: ``(B, D...)`` embeddings predicted from the brain (flattened after the batch dimension).
            image_emb: embeddings of the seen images, same shape as ``brain_emb``.
            ids: ``(B,)`` integer sample ids.
        """
        if brain_emb.shape != image_emb.shape or brain_emb.ndim < 2:
            raise ValueError(
                "RetrievalTopK.update: `brain_emb` and `image_emb` must have the same shape (B, D...), got "
                f"{tuple(brain_emb.shape)} and {tuple(image_emb.shape)}"
            )
        ids = check_ids(ids, brain_emb.shape[0], "RetrievalTopK")
        self._append_rows(ids, brain_emb=brain_emb.flatten(1).float(), image_emb=image_emb.flatten(1).float())

    def subsets(self, num_samples: int) -> list[np.ndarray]:
        """The index subsets used for ``num_samples`` de-duplicated samples (ascending-id order)."""
        if num_samples < 2:
            raise ValueError(f"RetrievalTopK needs at least 2 distinct samples, got {num_samples}")
        if num_samples <= self.batch_size:
            return [np.arange(num_samples)]
        rng = np.random.default_rng(self.seed)
        return [rng.choice(num_samples, self.batch_size, replace=False) for _ in range(self.num_repeats)]

    def _evaluate(self, whole: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-repeat hit rates and per-query mean hit rates (NaN for queries in no subset), per direction;
        ``whole``: one subset of every sample."""
        _, rows = self._rows()
        brain = F.normalize(rows["brain_emb"].double(), dim=1)
        image = F.normalize(rows["image_emb"].double(), dim=1)
        n = brain.shape[0]
        per_repeat: dict[str, list[Tensor]] = {d: [] for d in DIRECTIONS}
        hits = {d: torch.zeros(n, dtype=torch.float64, device=brain.device) for d in DIRECTIONS}
        seen = torch.zeros(n, dtype=torch.float64, device=brain.device)
        if whole and n < 2:
            raise ValueError(f"RetrievalTopK needs at least 2 distinct samples, got {n}")
        for subset in [np.arange(n)] if whole else self.subsets(n):
            idx = torch.as_tensor(subset, dtype=torch.int64, device=brain.device)
            sim = brain[idx] @ image[idx].T  # sim[a, b] = cos(brain_a, image_b)
            own = sim.diagonal()
            by_query = {
                "brain_to_image": (sim > own[:, None]).sum(dim=1) < self.top_k,  # row a: brain a ranks images
                "image_to_brain": (sim > own[None, :]).sum(dim=0) < self.top_k,  # column b: image b ranks brains
            }
            for direction, hit in by_query.items():
                per_repeat[direction].append(hit.double().mean())
                hits[direction].index_add_(0, idx, hit.double())
            seen.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
        repeats = {d: torch.stack(v) for d, v in per_repeat.items()}
        per_query = {d: torch.where(seen > 0, h / seen.clamp(min=1), torch.nan) for d, h in hits.items()}
        return repeats, per_query

    def compute(self) -> dict[str, Tensor]:
        """Mean top-k accuracy over repeats: ``{"brain_to_image": t, "image_to_brain": t}``."""
        repeats, _ = self._evaluate()
        return {d: r.mean() for d, r in repeats.items()}

    def compute_all(self) -> dict[str, Tensor]:
        """Top-k accuracy with every (de-duplicated) sample as candidate at once, e.g. MindEye's 982-way variant."""
        repeats, _ = self._synced(lambda: self._evaluate(whole=True))
        return {d: r[0] for d, r in repeats.items()}

    def per_repeat(self) -> dict[str, Tensor]:
        """Hit rate of each subset, per direction (MindEye's 95% CI uses their std / sqrt(repeats))."""
        return self._synced(lambda: self._evaluate()[0])

    def per_sample(self) -> dict[str, Tensor]:
        """Per-query hit rate averaged over the subsets it was drawn in; NaN for queries never drawn.

        Ordered by ascending sample id (see :meth:`sample_ids`).
        """
        return self._synced(lambda: self._evaluate()[1])
