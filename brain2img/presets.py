"""Named size presets for config dataclasses (``paper`` / ``tiny`` ...), with field overrides, and the typed *specs*
derived from those configs: what a method takes as ``model.<part>`` (a preset name plus optional overrides).

:func:`preset_spec` turns a config dataclass into a frozen dataclass ``<X>Spec`` with ``preset`` and one
``Optional[...] = None`` copy of every config field (``None``: the preset's value), documented from the config's
``Attributes:`` section, so that jsonargparse lists every field in ``--help`` and refuses a misspelt one at parse
time. The fields a method sets itself (from the data) are left out; :meth:`PresetSpec.config` builds the config.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Spec")
_ENTRY = re.compile(r"^(\w+)(?: \([^)]*\))?:\s*(.*)$")


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


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> description from the ``Attributes:`` section of a Google-style class docstring (continuation
    lines joined; empty when there is no such section)."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Attributes:"), len(lines))
    indent, name = None, None
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = _ENTRY.match(line.strip())
        if match and (indent is None or depth == indent):
            indent, name = depth, match.group(1)
            docs[name] = match.group(2)
        elif name is not None:
            docs[name] += " " + line.strip()
    return docs


def plain(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively (what YAML and ``torch.load(weights_only=True)`` read)."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Spec:
    """Typed settings of one part of a method (``model.<part>`` in YAML): a frozen dataclass whose fields jsonargparse
    lists in ``--help`` and checks at parse time; Python callers may pass a dict of its fields instead."""

    _owner = "spec"  # where it sits in a config (e.g. ``model.metrics``), for error messages; not a field

    @classmethod
    def coerce(cls: type[S], value: S | Mapping[str, Any] | None) -> S:
        """The spec for ``value``: a spec (returned as is), a dict of its fields, or ``None`` (the default).

        Raises:
            ValueError: a dict key that is not a field (named, with the valid ones).
        """
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise TypeError(f"{cls._owner}: expected a {cls.__name__}, a dict or None, got {type(value).__name__}")
        cls.check_names(value)
        return cls(**value)

    @classmethod
    def check_names(cls, names: Iterable[str]) -> None:
        """Refuse names that are no field of the spec, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"{cls._owner}: unknown field(s) {unknown}; expected some of {sorted(known)}")

    def to_dict(self) -> dict[str, Any] | None:
        """Plain data for hyperparameters and checkpoints (tuples as lists); :meth:`coerce` reads it back."""
        return plain({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class PresetSpec(Spec):
    """A preset name plus optional field overrides (made by :func:`preset_spec`)."""

    # set on each generated class: the config dataclass, its presets, the YAML key (errors), fields the method sets
    # (name -> who sets it), and whether ``preset: null`` turns the part off
    _config_class = None
    _presets = {}  # class attributes, not fields: no annotations
    _fixed = {}
    _can_be_off = False

    def __post_init__(self) -> None:
        preset = getattr(self, "preset", None)
        if preset is None:
            if not self._can_be_off:
                raise ValueError(f"{self._owner}.preset is required: one of {sorted(self._presets)}")
            if self.overrides():
                raise ValueError(f"{self._owner}.preset is null ({self._owner} off) but {sorted(self.overrides())} "
                                 f"are set: give a preset ({', '.join(sorted(self._presets))}) or drop them")
        elif preset not in self._presets:
            raise ValueError(f"{self._owner}: unknown preset {preset!r}; expected one of {sorted(self._presets)}")

    @property
    def enabled(self) -> bool:
        """False for a part turned off by ``preset: null``."""
        return getattr(self, "preset", None) is not None

    @classmethod
    def coerce(cls: type[S], value: S | Mapping[str, Any] | None) -> S:
        """The spec for ``value``: a spec (returned as is), a dict of its fields (a missing ``preset`` is the class
        default, as the former dict parameters) or ``None`` (off for parts that can be off, else the default).

        Raises:
            ValueError: a dict key that is not a field, or a field the method sets itself (both named).
        """
        if value is None and cls._can_be_off:
            return cls(preset=None)
        return super().coerce(value)

    @classmethod
    def check_names(cls, names: Iterable[str]) -> None:
        """Refuse names that are set by the method or are no field of the spec, naming them."""
        names = set(names)
        fixed = sorted(names & set(cls._fixed))
        if fixed:
            why = "; ".join(f"{n}: {cls._fixed[n]}" for n in fixed)
            raise ValueError(f"{cls._owner}: {fixed} cannot be set, the method sets them ({why})")
        super().check_names(names)

    def overrides(self) -> dict[str, Any]:
        """The fields that are set (not ``None``), except ``preset``."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "preset" and getattr(self, f.name) is not None}

    def to_dict(self) -> dict[str, Any] | None:
        """Plain data for hyperparameters and checkpoints: ``{"preset": ..., **overrides}`` (tuples as lists), or
        ``None`` for a part that is off; :meth:`coerce` reads it back."""
        if not self.enabled:
            return None
        return plain({"preset": self.preset, **self.overrides()})

    def config(self, **fixed: Any) -> Any:
        """The config: the preset's values, then the overrides, then ``fixed`` (the fields the method sets).

        Raises:
            ValueError: the part is off, or the config refuses the values.
        """
        if not self.enabled:
            raise ValueError(f"{self._owner} is off (preset: null): there is no config to build")
        return config_from_preset(self._config_class, self._presets, self._owner, self.preset,
                                  {**self.overrides(), **fixed})


def _format_doc(summary: str, docs: Sequence[tuple[str, str]]) -> str:
    lines = [summary.strip(), "", "Attributes:"]
    for name, doc in docs:
        lines.append(f"    {name}: {doc}")
    return "\n".join(lines) + "\n"


def preset_spec(name: str, config_class: type, presets: Mapping[str, Mapping[str, Any]], *, module: str,
                owner: str, summary: str, preset_doc: str, default_preset: str = "tiny",
                fixed: Mapping[str, str] | None = None, can_be_off: bool = False,
                extra: Sequence[tuple[str, Any, str]] = (), docs: Mapping[str, str] | None = None,
                base: type[PresetSpec] = PresetSpec) -> type:
    """Make the frozen dataclass ``name``: ``preset`` plus an ``Optional[...] = None`` copy of every field of
    ``config_class`` except ``fixed``, plus ``extra`` fields.

    Args:
        name: class name; the caller assigns the class to the module attribute of the same name.
        config_class: the config dataclass (its field types and ``Attributes:`` docs are copied).
        presets: preset name -> values; ``preset`` is typed ``Literal`` of these names.
        module: the module the class lives in (``__name__`` of the caller), so jsonargparse can import it by path.
        owner: where it sits in a config (``model.network``), for error messages.
        summary: first paragraph of the class docstring.
        preset_doc: description of the ``preset`` field.
        default_preset: ``preset`` of ``name()``.
        fixed: config fields the method sets -> who sets them (left out of the spec, refused by :meth:`coerce`).
        can_be_off: ``preset`` may be ``None``, which turns the part off.
        extra: more ``(name, type, description)`` fields, all defaulting to ``None``.
        docs: descriptions for config fields that its docstring does not document (or to replace them).
        base: :class:`PresetSpec` or a (field-less, frozen dataclass) subclass of it with more behaviour.
    """
    fixed = dict(fixed or {})
    hints = typing.get_type_hints(config_class)
    names = [f.name for f in fields(config_class)]
    if set(fixed) - set(names):
        raise ValueError(f"preset_spec({name}): fixed {sorted(set(fixed) - set(names))} are no {config_class.__name__}"
                         " fields")
    config_docs = {**attribute_docs(config_class), **(docs or {})}
    preset_type: Any = Literal[tuple(presets)]
    spec_fields: list[tuple[str, Any, Any]] = [
        ("preset", preset_type | None if can_be_off else preset_type, dataclasses.field(default=default_preset))]
    field_docs = [("preset", preset_doc)]
    for field_name in names:
        if field_name in fixed:
            continue
        spec_fields.append((field_name, hints[field_name] | None, dataclasses.field(default=None)))
        field_docs.append((field_name, config_docs.get(field_name, f"{config_class.__name__}.{field_name}.")))
    for field_name, field_type, doc in extra:
        spec_fields.append((field_name, field_type | None, dataclasses.field(default=None)))
        field_docs.append((field_name, doc))
    namespace = {"__doc__": _format_doc(summary, field_docs), "_config_class": config_class,
                 "_presets": dict(presets), "_owner": owner, "_fixed": fixed, "_can_be_off": can_be_off}
    cls = dataclasses.make_dataclass(name, spec_fields, bases=(base,), namespace=namespace, frozen=True)
    cls.__module__ = module
    cls.__qualname__ = name
    return cls
