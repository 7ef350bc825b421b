"""EEG-ImageNet (Spampinato et al., CVPR 2017; the DreamDiffusion EEG set) from the files its publishers ship.

40 ImageNet classes x 50 images, shown to 6 subjects in blocks of one class (0.5 s per image), 128 channels at
1 kHz. The file formats are described (and read) in :mod:`brain2img.data.eeg_imagenet_files`.

Per record, as DreamDiffusion's ``EEGDataset`` does: keep ``length_range[0] <= L <= length_range[1]`` (inclusive,
without the reference's ``i <= len(data)`` off-by-one), take samples ``time_slice`` (default ``[20, 460)``, 440
samples) and resample them linearly to ``resample_to`` points spanning the same interval (first and last sample
kept: ``scipy.interpolate.interp1d`` from ``linspace(0, 1, 440)`` onto ``linspace(0, 1, 512)``). No further
normalisation (the ``*_std.pth`` files are already standardised). Stimuli are centre-cropped to a square and resized
with PIL bicubic to ``image_size``; a missing image is an error, never random noise.

Splits (always by stimulus image, as every brain2img dataset):

- ``"reference"``: the shipped ``block_splits_by_image_*.pth``, entry ``split_index``, ``train``/``val``/``test``
  as given (records outside them are not served). The reference code trains on ``train`` and evaluates on ``test``
  and never reads ``val``; brain2img uses ``val`` for model selection.
- ``"stimulus"``: a seeded split of the images, stratified by class (:func:`brain2img.data.splits.split_stimuli`).
- ``"block"``: a block-aware control, see :func:`brain2img.data.eeg_imagenet_splits.block_split`.

``shuffled_labels=True`` is the permutation control: the image paired with each training trial is permuted (seeded,
within subject); val/test pairs stay true. A model that still scores above chance on test under this control rides
on something other than the image (e.g. leakage between splits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.eeg_imagenet.files import (
    EEGRecords,
    files_digest,
    image_file,
    load_stimulus_image,
    read_eeg_file,
    read_split_file,
)
from brain2img.data.eeg_imagenet.prep import (
    block_positions,
    block_split,
    block_summary,
    resample_linear,
    segment,
    shuffle_train_pairs,
)
from brain2img.data.prepared import Prepared, PreparedDataModule, TrialData, save_arrays
from brain2img.data.schema import check_choice
from brain2img.data.splits import SPLITS, split_stimuli
from brain2img.io import sha256_file

CACHE_VERSION = 1
SPLIT_KINDS = ("reference", "stimulus", "block")
SPLIT_INDEXING = ("filtered", "all")


# --------------------------------------------------------------------------------------------------- datamodule
class EEGImageNetDataModule(PreparedDataModule):
    """EEG-ImageNet from ``eeg_*_std.pth``, a ``block_splits_by_image_*.pth`` file and the stimulus JPEGs.

    ``prepare_data`` reads the ``.pth`` once, validates it, filters (subject, length, split), slices and resamples
    the EEG, loads and resizes the images, and writes memory-mapped ``.npy`` arrays and a manifest (sha256 of the
    source files and of every output, the split, counts) to ``cache_dir/<name>-<hash>``, where the hash covers this
    config and the sha256 of the ``.pth`` and split files. It writes a temporary folder and renames it, and reuses
    a complete folder. The images' digest is recorded in the manifest but not in the folder name: after replacing
    stimulus files, delete the folder. ``shuffled_labels`` does not change the prepared data (it is applied on load).

    Args:
        eeg_path: the EEG file (``eeg_5_95_std.pth``, ``eeg_14_70_std.pth`` or ``eeg_55_95_std.pth``).
        splits_path: ``block_splits_by_image_single.pth`` (with ``split_indexing="filtered"``) or
            ``block_splits_by_image_all.pth`` (with ``split_indexing="all"``); needed for ``split="reference"``,
            ignored otherwise.
        image_root: folder with ``<synset>/<name>.JPEG``.
        subject: keep records of this subject (4 is the DreamDiffusion setting); ``None`` keeps all 6.
        split_index: entry of the split file's ``'splits'`` list.
        split: ``"reference"``, ``"stimulus"`` or ``"block"`` (see the module docstring and :func:`block_split`).
        split_indexing: what the split file's indices point into: ``"filtered"``, the record list after the subject
            filter (what DreamDiffusion's ``Splitter`` indexes; the "single" file is meant for this with one
            subject), or ``"all"``, the full record list (the "all" file). The length filter applies afterwards.
        time_slice: ``(t0, t1)``, samples ``[t0, t1)`` of every record are kept.
        resample_to: number of time samples after linear resampling.
        length_range: ``(min, max)``: records with ``min <= L <= max`` are kept (inclusive).
        image_size: side of the square stimulus images in pixels.
        n_channels: expected EEG channels per record.
        shuffled_labels: serve training trials with permuted images (the control; see the module docstring).
        sfreq_original: sampling rate of the records in Hz.
        val_fraction: per class fraction of images in val for ``split="stimulus"`` / ``"block"``.
        test_fraction: per class fraction of images in test for ``split="stimulus"`` / ``"block"``.
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``seed``: of the ``"stimulus"``
            split, of the shuffled control and of the training shuffle; ``eval_repeats``: each subject saw each image
            once, so ``"average"`` and ``"single"`` serve the same trials; ``cache_dir``, ``batch_size``,
            ``num_workers``, ``predict_split``).
    """

    cache_name = "eeg_imagenet"
    extra_arrays = ("record_index", "block_position")
    mmap_arrays = ("brain",)

    def __init__(
        self,
        eeg_path: str,
        splits_path: str | None,
        image_root: str,
        subject: int | None = 4,
        split_index: int = 0,
        split: str = "reference",
        split_indexing: str = "filtered",
        time_slice: tuple[int, int] = (20, 460),
        resample_to: int = 512,
        length_range: tuple[int, int] = (450, 600),
        image_size: int = 64,
        n_channels: int = 128,
        shuffled_labels: bool = False,
        sfreq_original: float = 1000.0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice(split, SPLIT_KINDS, "split")
        check_choice(split_indexing, SPLIT_INDEXING, "split_indexing")
        if split == "reference" and splits_path is None:
            raise ValueError("split='reference' needs splits_path (block_splits_by_image_single.pth or "
                             "block_splits_by_image_all.pth); use split='stimulus' or 'block' without a split file")
        t0, t1 = (int(t) for t in time_slice)
        lo, hi = (int(v) for v in length_range)
        if not 0 <= t0 < t1 - 1 or resample_to < 2:
            raise ValueError(f"need 0 <= time_slice[0] < time_slice[1] - 1 and resample_to >= 2, got "
                             f"time_slice={tuple(time_slice)}, resample_to={resample_to}")
        if not 1 <= lo <= hi:
            raise ValueError(f"length_range must satisfy 1 <= min <= max, got {tuple(length_range)}")
        if image_size < 8 or n_channels < 1 or not sfreq_original > 0:
            raise ValueError(f"need image_size >= 8, n_channels >= 1 and sfreq_original > 0, got "
                             f"image_size={image_size}, n_channels={n_channels}, sfreq_original={sfreq_original}")
        if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
            raise ValueError(f"need val_fraction >= 0, test_fraction >= 0 and a sum < 1, got {val_fraction}, "
                             f"{test_fraction}")
        self.save_hyperparameters()
        self.eeg_path = Path(eeg_path)
        self.splits_path = Path(splits_path) if splits_path is not None and split == "reference" else None
        self.image_root = Path(image_root)
        if not self.eeg_path.is_file():
            raise FileNotFoundError(f"EEG-ImageNet EEG file not found: '{self.eeg_path}' (eeg_path)")
        if self.splits_path is not None and not self.splits_path.is_file():
            raise FileNotFoundError(f"EEG-ImageNet split file not found: '{self.splits_path}' (splits_path)")
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"EEG-ImageNet image folder not found: '{self.image_root}' (image_root, expected "
                                    f"<image_root>/<synset>/<name>.JPEG)")
        self.subject = None if subject is None else int(subject)
        self.split, self.split_index, self.split_indexing = split, int(split_index), split_indexing
        self.time_slice, self.resample_to, self.length_range = (t0, t1), int(resample_to), (lo, hi)
        self._image_size, self.n_channels = int(image_size), int(n_channels)
        self.shuffled_labels, self.sfreq_original = bool(shuffled_labels), float(sfreq_original)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self._sources: dict[str, str] | None = None
        self._trial_records: np.ndarray | None = None

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return "eeg"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        return (self.n_channels, self.resample_to)

    @property
    def sfreq(self) -> float:
        """Sampling rate after resampling: ``time_slice`` spans ``t1 - t0 - 1`` original sample intervals and
        ``resample_to - 1`` new ones (1164.0 Hz for the defaults: ``1000 * 511 / 439``)."""
        t0, t1 = self.time_slice
        return self.sfreq_original * (self.resample_to - 1) / (t1 - t0 - 1)

    @property
    def trial_records(self) -> np.ndarray:
        """Index into the ``.pth`` ``'dataset'`` list of every served trial (after :meth:`setup`)."""
        if self._trial_records is None:
            raise RuntimeError("trial_records is known after setup()")
        return self._trial_records

    # ----------------------------------------------------------------- config and folder
    def source_checksums(self) -> dict[str, str]:
        """sha256 of the EEG file (and of the split file for ``split="reference"``), computed once."""
        if self._sources is None:
            sums = {"eeg": sha256_file(self.eeg_path)}
            if self.splits_path is not None:
                sums["splits"] = sha256_file(self.splits_path)
            self._sources = sums
        return self._sources

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared folder (named by this config's hash)."""
        sums = self.source_checksums()
        cfg: dict[str, Any] = {
            "version": CACHE_VERSION, "eeg_sha256": sums["eeg"], "image_root": str(self.image_root.resolve()),
            "subject": self.subject, "n_channels": self.n_channels, "time_slice": list(self.time_slice),
            "resample_to": self.resample_to, "length_range": list(self.length_range), "image_size": self._image_size,
            "split": self.split,
        }
        if self.split == "reference":
            cfg.update(splits_sha256=sums["splits"], split_index=self.split_index, split_indexing=self.split_indexing)
        else:
            cfg.update(val_fraction=self.val_fraction, test_fraction=self.test_fraction)
        if self.split == "stimulus":
            cfg["seed"] = self.seed
        return cfg

    def folder_label(self) -> str:
        who = "all" if self.subject is None else f"sub{self.subject}"
        return f"eeg_imagenet-{who}-{self.split}"

    # ----------------------------------------------------------------- selection
    def _subject_records(self, recs: EEGRecords) -> tuple[np.ndarray, str]:
        if self.subject is None:
            return np.arange(len(recs.subject)), "all records"
        kept = np.flatnonzero(recs.subject == self.subject)
        if not len(kept):
            raise ValueError(f"EEG file '{recs.path}': no records left after the subject filter: no record has "
                             f"'subject' == {self.subject} (subjects in the file: {np.unique(recs.subject).tolist()})")
        return kept, f"the records of subject {self.subject}"

    def _select(self, recs: EEGRecords) -> tuple[dict[str, np.ndarray] | None, np.ndarray, dict[str, Any]]:
        """Record indices to serve (sorted) and, for the reference split, the records of each split."""
        by_subject, who = self._subject_records(recs)
        lo, hi = self.length_range
        length_ok = (recs.lengths >= lo) & (recs.lengths <= hi)
        counts: dict[str, Any] = {"records_in_file": len(recs.lengths), "after_subject_filter": len(by_subject)}
        length_rule = f"the length filter {lo} <= L <= {hi}"
        if self.split != "reference":
            kept = by_subject[length_ok[by_subject]]
            if not len(kept):
                lengths = recs.lengths[by_subject]
                raise ValueError(f"EEG file '{recs.path}': no records left after {length_rule}: the lengths of "
                                 f"{who} range from {lengths.min()} to {lengths.max()}")
            counts["after_length_filter"] = len(kept)
            return None, kept, counts
        assert self.splits_path is not None
        indexed = by_subject if self.split_indexing == "filtered" else np.arange(len(recs.lengths))
        what = who if self.split_indexing == "filtered" else "all records"
        idx = read_split_file(self.splits_path, self.split_index, len(indexed), f"{what} of '{recs.path}'")
        per_split: dict[str, np.ndarray] = {}
        for name in SPLITS:
            rec = indexed[idx[name]]
            in_subject = rec[np.isin(rec, by_subject)]
            per_split[name] = np.sort(in_subject[length_ok[in_subject]])
            counts[name] = {"in_split_file": len(rec), "after_subject_filter": len(in_subject),
                            "after_length_filter": len(per_split[name])}
            if not len(per_split[name]):
                rule = f"the subject filter (subject={self.subject})" if not len(in_subject) else length_rule
                raise ValueError(f"split file '{self.splits_path}': 'splits'[{self.split_index}]['{name}'] has no "
                                 f"records left after {rule} ({len(rec)} listed)")
        kept = np.sort(np.concatenate([per_split[name] for name in SPLITS]))
        return per_split, kept, counts

    def _stimuli(self, recs: EEGRecords, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stimulus ids (image indices, sorted), stimulus position per trial, class per stimulus; checks that an
        image has one class and that its name's synset is that class."""
        stim_ids, first, trial_stimulus = np.unique(recs.image[kept], return_index=True, return_inverse=True)
        trial_stimulus = trial_stimulus.reshape(-1).astype(np.int64)
        labels = recs.label[kept][first]
        differs = np.flatnonzero(recs.label[kept] != labels[trial_stimulus])
        if len(differs):
            j = differs[0]
            raise ValueError(f"EEG file '{recs.path}': records {kept[first[trial_stimulus[j]]]} and {kept[j]} show "
                             f"image {stim_ids[trial_stimulus[j]]} but have different 'label' values")
        for p, (sid, label) in enumerate(zip(stim_ids, labels, strict=True)):
            name, synset = recs.image_names[sid], recs.label_names[label]
            if name.split("_")[0] != synset:
                record = kept[first[p]]
                raise ValueError(f"EEG file '{recs.path}': record {record} shows image '{name}' ('images'[{sid}]) "
                                 f"but its 'label' {label} is class '{synset}' ('labels'[{label}])")
        return stim_ids.astype(np.int64), trial_stimulus, labels.astype(np.int64)

    def _reference_splits(self, recs: EEGRecords, per_split: dict[str, np.ndarray], kept: np.ndarray,
                          trial_stimulus: np.ndarray, stim_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Stimulus positions of each reference split; an image with records in two splits is an error."""
        owner = np.full(len(stim_ids), -1)
        splits: dict[str, np.ndarray] = {}
        for k, name in enumerate(SPLITS):
            pos = np.unique(trial_stimulus[np.isin(kept, per_split[name])])
            clash = pos[owner[pos] >= 0]
            if len(clash):
                other = SPLITS[owner[clash[0]]]
                sid = stim_ids[clash[0]]
                raise ValueError(f"split file '{self.splits_path}': image '{recs.image_names[sid]}' ('images'[{sid}])"
                                 f" has records in both '{other}' and '{name}' of 'splits'[{self.split_index}]; "
                                 f"brain2img splits by image (with split_indexing='{self.split_indexing}', subject="
                                 f"{self.subject})")
            owner[pos] = k
            splits[name] = pos.astype(np.int64)
        return splits

    # ----------------------------------------------------------------- preparation
    def _load_images(self, recs: EEGRecords, stim_ids: np.ndarray) -> tuple[np.ndarray, list[Path]]:
        paths = [image_file(self.image_root, recs.image_names[sid]) for sid in stim_ids]
        images = np.empty((len(paths), self._image_size, self._image_size, 3), dtype=np.uint8)
        for p, (sid, path) in enumerate(zip(stim_ids, paths, strict=True)):
            try:
                images[p] = load_stimulus_image(path, self._image_size)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{err}; it is image '{recs.image_names[sid]}' ('images'[{sid}] of "
                                        f"'{recs.path}')") from err
        return images, paths

    def _check_lengths(self, recs: EEGRecords, kept: np.ndarray) -> None:
        """Every kept record must reach the end of ``time_slice`` (never stretched from fewer samples)."""
        t1 = self.time_slice[1]
        short = kept[recs.lengths[kept] < t1]
        if len(short):
            raise ValueError(f"EEG file '{recs.path}': record {short[0]} has L = {recs.lengths[short[0]]} samples, "
                             f"shorter than the end of time_slice {self.time_slice} ({len(short)} such records "
                             f"pass length_range {self.length_range}); raise length_range[0] to {t1} or end the "
                             f"slice earlier")

    def _write_brain(self, recs: EEGRecords, kept: np.ndarray, path: Path) -> None:
        """Slice, check and resample every kept record into a memory-mapped float32 ``.npy``."""
        t0, t1 = self.time_slice
        brain = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                          shape=(len(kept), self.n_channels, self.resample_to))
        for j, r in enumerate(kept):
            seg = segment(recs.eeg[r], t0, t1)
            if not np.isfinite(seg).all():
                raise ValueError(f"EEG file '{recs.path}': record {r} field 'eeg' has NaN or Inf within samples "
                                 f"[{t0}, {t1})")
            brain[j] = resample_linear(seg, self.resample_to)
        brain.flush()
        del brain

    def write(self, folder: Path) -> Prepared:
        """Read and validate the ``.pth`` once; filter, slice and resample the EEG; load and resize the images."""
        recs = read_eeg_file(self.eeg_path, self.n_channels)
        per_split, kept, counts = self._select(recs)
        self._check_lengths(recs, kept)
        stim_ids, trial_stimulus, labels = self._stimuli(recs, kept)
        trial_subject = recs.subject[kept]
        block, position = block_positions(trial_subject, recs.label[kept])
        if per_split is not None:
            splits = self._reference_splits(recs, per_split, kept, trial_stimulus, stim_ids)
        elif self.split == "stimulus":
            splits = split_stimuli(labels, self.val_fraction, self.test_fraction, self.seed)
        else:
            splits = block_split(trial_stimulus, position, labels, self.val_fraction, self.test_fraction)
        images, image_paths = self._load_images(recs, stim_ids)
        self._write_brain(recs, kept, folder / "brain.npy")
        save_arrays(folder, {"images": images, "trial_stimulus": trial_stimulus, "stimulus_ids": stim_ids,
                             "labels": labels, "trial_subject": trial_subject, "record_index": kept.astype(np.int64),
                             "block_position": position})
        sums = self.source_checksums()
        details = {
            "sources": {
                "eeg": {"path": str(self.eeg_path.resolve()), "sha256": sums["eeg"]},
                "splits": None if self.splits_path is None else {"path": str(self.splits_path.resolve()),
                                                                 "sha256": sums["splits"]},
                "images": {"root": str(self.image_root.resolve()), "n_files": len(image_paths),
                           "digest": files_digest(image_paths)},
            },
            "counts": {**counts, "trials": len(kept), "stimuli": len(stim_ids),
                       "per_split_stimuli": {k: len(v) for k, v in splits.items()}},
            "sfreq": self.sfreq,
            "block_design": block_summary(block, position, trial_stimulus, trial_subject, recs.label[kept],
                                                splits),
        }
        return Prepared(stim_ids, trial_stimulus, splits, details)

    # ----------------------------------------------------------------- loading
    def loaded(self, data: TrialData, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> TrialData:
        """Keep each trial's record index; apply the shuffled-pairs control (on load, never to the prepared data)."""
        if self.shuffled_labels:
            data.trial_stimulus = shuffle_train_pairs(data.trial_stimulus, data.trial_subject, data.splits["train"],
                                                      self.seed)
        self._trial_records = arrays["record_index"]
        return data
