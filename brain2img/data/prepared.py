"""The base of every dataset that is prepared once into a cache folder and served from memory-mapped arrays.

A dataset wing (``data/nsd/``, ``data/eeg_imagenet/``, ``data/simulated/``, ``data/arrays/``) subclasses
:class:`PreparedDataModule` and writes only its settings, its file readers and :meth:`PreparedDataModule.write`.
This base owns the rest:

- the folder: ``cache_dir/<folder_label()>-<hash of cache_config()>``, so a changed setting or source file gets a
  folder of its own and nothing prepared earlier is overwritten;
- the atomic publish: :meth:`write` fills a temporary sibling folder that is renamed into place only when complete
  (:func:`brain2img.io.staging_folder`), so an interrupted preparation never leaves a folder that looks finished;
- the manifest: config, split (stimulus ids, trial ids, repeats) and the sha256 of every array
  (:mod:`brain2img.data.manifest`);
- opening: a reused folder is checked against its config hash and checksums before it is loaded, the large arrays
  memory-mapped.

Prepared arrays (``<name>.npy``): ``brain`` float32 ``(n_trials, *brain_shape)``, ``images`` uint8
``(n_stimuli, H, W, 3)``, ``trial_stimulus`` int64 ``(n_trials,)`` (stimulus position of each trial),
``stimulus_ids`` int64 ``(n_stimuli,)`` (sorted), ``labels`` int64 ``(n_stimuli,)`` (``-1`` unknown) and
``trial_subject`` int64 ``(n_trials,)``, plus any extra arrays a dataset lists in :attr:`extra_arrays`.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from brain2img.data.base import BrainImageDataModule, TrialData
from brain2img.data.manifest import (
    MANIFEST_NAME,
    array_checksums,
    build_manifest,
    manifest_split_positions,
    open_prepared,
)
from brain2img.io import config_hash, staging_folder, write_json_atomic

log = logging.getLogger(__name__)
ARRAYS = ("brain", "images", "trial_stimulus", "stimulus_ids", "labels", "trial_subject")


@dataclass
class Prepared:
    """What :meth:`PreparedDataModule.write` returns besides the arrays it saved.

    Attributes:
        stimulus_ids: id of each stimulus position (sorted), as saved in ``stimulus_ids.npy``.
        trial_stimulus: stimulus position of each trial, as saved in ``trial_stimulus.npy``.
        splits: sorted stimulus positions of ``train``, ``val`` and ``test``.
        details: extra JSON-serialisable manifest entries (sources, counts, ...).
        trial_columns: per-trial int arrays (e.g. ``sessions``) listed for the trials of each split in the manifest,
            beside its ``trial_ids``.
    """

    stimulus_ids: np.ndarray
    trial_stimulus: np.ndarray
    splits: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)
    trial_columns: dict[str, np.ndarray] = field(default_factory=dict)


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save each array as ``folder/<name>.npy`` (no pickles)."""
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", np.asarray(arr), allow_pickle=False)


class PreparedDataModule(BrainImageDataModule):
    """Base of datasets prepared once into a cache folder (see the module docstring).

    Args:
        cache_dir: parent folder of the prepared folders (default ``.cache/brain2img/<cache_name>``).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        eval_repeats: val/test/predict samples: ``"average"`` (one per stimulus and subject, brain averaged over its
            repeats) or ``"single"`` (every trial).
        predict_split: split served by ``predict_dataloader``: ``"train"``, ``"val"`` or ``"test"``.
        seed: seed of the split (where the dataset draws one) and of the training shuffle.
    """

    cache_name: ClassVar[str] = "dataset"  #: default sub-folder of ``.cache/brain2img`` and folder prefix
    extra_arrays: ClassVar[tuple[str, ...]] = ()  #: arrays loaded besides :data:`ARRAYS`
    mmap_arrays: ClassVar[tuple[str, ...]] = ("brain", "images")  #: arrays memory-mapped on load

    def __init__(self, cache_dir: str | None = None, batch_size: int = 32, num_workers: int = 0,
                 eval_repeats: str = "average", predict_split: str = "test", seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, eval_repeats, predict_split, seed)
        self.cache_dir = Path(cache_dir if cache_dir is not None else f".cache/brain2img/{self.cache_name}")

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def cache_config(self) -> dict[str, Any]:
        """Everything that determines the prepared arrays (JSON-serialisable); its hash names the folder."""

    @abstractmethod
    def write(self, folder: Path) -> Prepared:
        """Read the sources and save the prepared arrays (:data:`ARRAYS` and :attr:`extra_arrays`) into ``folder``.

        Large arrays can be written piece by piece with ``np.lib.format.open_memmap(folder / "brain.npy", ...)``.
        """

    def folder_label(self) -> str:
        """The readable part of the folder name, before the hash (e.g. ``nsd-subj01-nsd``)."""
        return self.cache_name

    def loaded(self, data: TrialData, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> TrialData:
        """Hook after loading: keep extra arrays, apply load-time transforms (e.g. a shuffled-pairs control)."""
        return data

    # ----------------------------------------------------------------- the folder
    @property
    def data_folder(self) -> Path:
        """This config's prepared folder."""
        return self.cache_dir / f"{self.folder_label()}-{config_hash(self.cache_config())}"

    @property
    def manifest_path(self) -> Path:
        return self.data_folder / MANIFEST_NAME

    def prepare_data(self) -> None:
        """Write the prepared folder unless a complete one (with its manifest) exists."""
        folder = self.data_folder
        if (folder / MANIFEST_NAME).is_file():
            return
        start = time.perf_counter()
        with staging_folder(folder, MANIFEST_NAME) as tmp:
            prepared = self.write(tmp)
            manifest = build_manifest(self.cache_config(), self.seed, prepared.stimulus_ids, prepared.splits,
                                      prepared.trial_stimulus, array_checksums(tmp))
            manifest.update(prepared.details)
            for split in manifest["splits"].values():
                trials = np.asarray(split["trial_ids"], dtype=np.int64)
                split.update({key: np.asarray(col)[trials].tolist() for key, col in prepared.trial_columns.items()})
            write_json_atomic(tmp / MANIFEST_NAME, manifest)
        log.info("prepared %s (%d trials, %d stimuli) in '%s' in %.1f s", type(self).__name__,
                 len(prepared.trial_stimulus), len(prepared.stimulus_ids), folder, time.perf_counter() - start)

    def _load(self) -> TrialData:
        """Check the prepared folder (config hash, checksums) and load it (preparing it first if needed)."""
        if not self.manifest_path.is_file():
            self.prepare_data()
        folder = self.data_folder
        manifest, arr = open_prepared(folder, config_hash(self.cache_config()), (*ARRAYS, *self.extra_arrays),
                                      mmap=self.mmap_arrays)
        splits = manifest_split_positions(manifest, arr["stimulus_ids"], self.manifest_path)
        data = TrialData(brain=arr["brain"], images=arr["images"], trial_stimulus=arr["trial_stimulus"],
                         stimulus_ids=arr["stimulus_ids"], labels=arr["labels"], trial_subject=arr["trial_subject"],
                         splits=splits)
        return self.loaded(data, arr, manifest)
