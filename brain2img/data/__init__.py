"""Datamodules: one per dataset, all yielding the :mod:`brain2img.data.schema` sample dict."""
