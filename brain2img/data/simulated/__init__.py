"""The embedded default benchmark: real photos shipped in PyPI wheels, simulated fMRI / EEG responses to them.

- :mod:`~brain2img.data.simulated.stimuli`: the photos and their seeded crops;
- :mod:`~brain2img.data.simulated.simulator`: the seeded encoding models (features -> voxels / EEG);
- :mod:`~brain2img.data.simulated.sources`: opt-in latent sources shared by subjects, spontaneous activity;
- :class:`SimulatedDataModule`: one simulated subject's paired trials (the quick start's data);
- :class:`SimulatedEEGCorpus`: unlabelled EEG of several simulated subjects (pre-training);
- :class:`SimulatedFMRICorpus`: unlabelled spontaneous fMRI of many simulated subjects (pre-training).
"""

from brain2img.data.simulated.corpus import SimulatedEEGCorpus
from brain2img.data.simulated.datamodule import SimulatedDataModule
from brain2img.data.simulated.fmri_corpus import SimulatedFMRICorpus

__all__ = ["SimulatedDataModule", "SimulatedEEGCorpus", "SimulatedFMRICorpus"]
