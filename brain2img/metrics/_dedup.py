"""Base class for metrics whose states are per-sample rows keyed by an integer sample id.

Under DDP, ``DistributedSampler`` pads the dataset so every rank gets the same number of samples: a few samples are
seen twice. Every metric in this package therefore stores the sample ids next to its states and, after gathering,
keeps exactly one row per id (sorted by id) before computing anything. The value is then independent of the number of
ranks, of how the dataset was partitioned and of the batch order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

T = TypeVar("T")


def check_ids(ids: Tensor, batch_size: int, owner: str) -> Tensor:
    """Validate a batch of sample ids and return it as a flat ``int64`` tensor.

    Args:
        ids: 1-D integer tensor with one id per sample.
        batch_size: expected number of ids.
        owner: name used in error messages (the metric class).

    Raises:
        TypeError: if ``ids`` is not an integer tensor.
        ValueError: if it is not 1-D with ``batch_size`` entries.
    """
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{owner}.update: `ids` must be an integer tensor (int64 sample ids), got {ids!r:.80}")
    if ids.ndim != 1 or ids.shape[0] != batch_size:
        raise ValueError(f"{owner}.update: `ids` must have shape ({batch_size},), got {tuple(ids.shape)}")
    return ids.to(torch.int64)


def first_occurrence(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Unique ids in ascending order and, for each, the position of its first occurrence in ``ids``."""
    unique, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    positions = torch.arange(ids.shape[0], device=ids.device)
    first = torch.full((unique.shape[0],), ids.shape[0], dtype=torch.int64, device=ids.device)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return unique, first


class IdDeduplicatedMetric(Metric):
    """A ``Metric`` with list states (``dist_reduce_fx="cat"``) plus an ``ids`` state, de-duplicated by id.

    Subclasses declare their row states with :meth:`_add_row_states`, append rows with :meth:`_append_rows` in
    ``update`` and read the gathered, de-duplicated rows (one per id, ascending id) with :meth:`_rows`.

    Duplicated ids are assumed to be the same sample (as with ``DistributedSampler`` padding): the first gathered
    occurrence is kept, so ids must identify samples, not stimuli shown in several trials.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def _add_row_states(self, *names: str) -> None:
        self.add_state("ids", default=[], dist_reduce_fx="cat")
        for name in names:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._row_names = names

    def _append_rows(self, ids: Tensor, **rows: Tensor) -> None:
        self.ids.append(ids)
        for name, value in rows.items():
            getattr(self, name).append(value.detach())

    def _rows(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Gathered rows, one per id in ascending id order (call only where states are synced, e.g. ``compute``)."""
        empty = self.ids.numel() == 0 if isinstance(self.ids, Tensor) else len(self.ids) == 0
        if empty:
            raise RuntimeError(f"{type(self).__name__}: no samples; call update() before compute()/per_sample()")
        ids = dim_zero_cat(self.ids).to(torch.int64)
        unique, first = first_occurrence(ids)
        return unique, {name: dim_zero_cat(getattr(self, name))[first] for name in self._row_names}

    def _synced(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the states gathered over all ranks (a no-op sync when already synced or not distributed)."""
        already = self._is_synced
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=not already,
            should_unsync=not already,
        ):
            return fn()

    def sample_ids(self) -> Tensor:
        """The de-duplicated sample ids (ascending, gathered over all ranks): the order of :meth:`per_sample`."""
        return self._synced(lambda: self._rows()[0])
