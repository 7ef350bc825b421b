"""Named size presets for config dataclasses (``paper`` / ``tiny`` ...), with field overrides."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_preset(cls: type[T], presets: dict[str, dict[str, Any]], owner: str, preset: str,
                       overrides: dict[str, Any]) -> T:
    """Build ``cls(**{**presets[preset], **overrides})``.

    Args:
        cls: a dataclass.
        presets: preset name -> field values.
        owner: the builder's name, for error messages.
        preset: the preset to start from.
        overrides: fields to replace.

    Raises:
        ValueError: an unknown preset or field name (the message lists the valid ones).
    """
    if preset not in presets:
        raise ValueError(f"{owner}: unknown preset {preset!r}; expected one of {sorted(presets)}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{owner}: unknown {cls.__name__} field(s) {unknown}; expected some of {sorted(known)}")
    return cls(**{**presets[preset], **overrides})
