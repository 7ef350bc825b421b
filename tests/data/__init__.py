"""Datamodules, their file readers and the prepared-cache and corpus bases."""
