"""Builders of small files in the real formats (NSD, EEG-ImageNet, raw EEG, tiny Stable-Diffusion folders) and
small shared settings, imported by the tests as ``tests.builders.<name>``; fixtures over them are in
``tests/conftest.py``."""
