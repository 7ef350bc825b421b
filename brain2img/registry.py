"""Every method and datamodule by a short name: its import path (imported only when resolved) and one line on it.

This is the one place that knows where the classes live: when a module moves, update its path here (the registry
test imports every entry, so a stale path fails it). ``brain2img list`` prints the table; YAML configs name the
classes by the same paths (``class_path``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

KINDS = ("method", "datamodule")


@dataclass(frozen=True)
class Entry:
    """One registered class.

    Attributes:
        name: short name (unique over all kinds).
        kind: ``method`` or ``datamodule``.
        path: import path ``package.module.Class``.
        description: one line.
    """

    name: str
    kind: str
    path: str
    description: str

    def resolve(self) -> type:
        """Import and return the class."""
        module, _, attr = self.path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


ENTRIES: tuple[Entry, ...] = (
    Entry("osaka", "method", "brain2img.methods.OsakaMethod",
          "Takagi & Nishimoto 2023: ridge regressions brain -> (VAE latent z, condition c), then img2img"),
    Entry("mindeye", "method", "brain2img.methods.MindEye",
          "Scotti et al. 2023: voxels -> CLIP image tokens (contrastive + diffusion prior) and a low-level latent"),
    Entry("dreamdiffusion", "method", "brain2img.methods.DreamDiffusion",
          "Bai et al. 2023, stage B: a pre-trained EEG encoder conditions latent diffusion"),
    Entry("eeg_pretrain", "method", "brain2img.methods.MaskedSignalPretraining",
          "DreamDiffusion stage A: masked signal modelling pre-trains the EEG encoder"),
    Entry("dcmae", "method", "brain2img.methods.DCMAE",
          "Sun et al. 2023 (DC-MAE), stage 3: a pre-trained fMRI encoder conditions latent diffusion"),
    Entry("dcmae_cross", "method", "brain2img.methods.DCMAECrossModal",
          "DC-MAE stage 2: the fMRI encoder tuned with cross-attention to an image masked autoencoder"),
    Entry("fmri_pretrain", "method", "brain2img.methods.FMRIPretraining",
          "DC-MAE stage 1 (double-contrast fMRI MAE) or MinD-Vis SC-MBM (masked MSE) on unlabelled fMRI"),
    Entry("simulated", "datamodule", "brain2img.data.simulated.SimulatedDataModule",
          "offline benchmark: real photos with simulated fMRI or EEG responses of one subject"),
    Entry("simulated_corpus", "datamodule", "brain2img.data.simulated.SimulatedEEGCorpus",
          "unlabelled simulated EEG of several subjects, for pre-training"),
    Entry("simulated_fmri_corpus", "datamodule", "brain2img.data.simulated.SimulatedFMRICorpus",
          "unlabelled spontaneous fMRI of many simulated subjects (shared sources), for pre-training"),
    Entry("arrays", "datamodule", "brain2img.data.arrays.ArrayDataModule",
          "your own .npy files: brain responses and the images shown, one per trial"),
    Entry("nsd", "datamodule", "brain2img.data.nsd.NSDDataModule",
          "Natural Scenes Dataset: single-trial fMRI betas of one subject, ROI-masked, with the COCO stimuli"),
    Entry("bold5000", "datamodule", "brain2img.data.bold5000.BOLD5000DataModule",
          "BOLD5000 (Chang et al. 2019): GLMsingle ROI betas of one subject (CSI1-4), test = the 113 repeated images"),
    Entry("god", "datamodule", "brain2img.data.god.GODDataModule",
          "Generic Object Decoding (Horikawa & Kamitani): fMRI of one of 5 subjects, 1200 + 50 ImageNet images"),
    Entry("eeg_imagenet", "datamodule", "brain2img.data.eeg_imagenet.EEGImageNetDataModule",
          "EEG-ImageNet (Spampinato et al.): 128-channel EEG of 6 subjects to 2,000 ImageNet images"),
    Entry("raw_eeg", "datamodule", "brain2img.data.raw_eeg.RawEEGDataModule",
          "unlabelled windows of raw EEG recordings (EDF/BDF/FIF/BrainVision), for pre-training"),
    Entry("fmri_corpus", "datamodule", "brain2img.data.fmri_corpus.FMRICorpusDataModule",
          "unlabelled fMRI of many subjects (HCP visual cortex, 4-D NIfTI, GOD training fMRI, .npy), for pre-training"),
)


def entries(kind: str | None = None) -> list[Entry]:
    """The registered entries, optionally of one kind, in registration order.

    Raises:
        ValueError: an unknown kind.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; choose one of {KINDS}")
    return [e for e in ENTRIES if kind is None or e.kind == kind]


def get(name: str) -> Entry:
    """The entry called ``name``.

    Raises:
        KeyError: no such entry (the message lists the names).
    """
    for entry in ENTRIES:
        if entry.name == name:
            return entry
    raise KeyError(f"no method or datamodule called {name!r}; registered: {', '.join(e.name for e in ENTRIES)}")


def resolve(name: str) -> type:
    """Import the class registered as ``name`` and return it."""
    return get(name).resolve()
