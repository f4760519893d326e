"""Field schemas of this repository's own argument dataclasses, read by introspection: importing them is cheap."""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing

from .fields import FieldSpec, bounds_from_metadata
from .types import parse_annotation, spec_from_runtime


@functools.lru_cache(maxsize=None)
def dataclass_fields(cls: type) -> dict[str, FieldSpec]:
    """Every init field of a dataclass, by name, with the bounds and fix its metadata declares."""
    hints, modules = {}, {}
    for klass in reversed(cls.__mro__):
        annotations = klass.__dict__.get("__annotations__", {})
        hints.update(annotations)
        modules.update(dict.fromkeys(annotations, klass.__module__))
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        ann = hints.get(f.name, f.type)
        spec = (
            parse_annotation(ann, _literal_aliases(modules.get(f.name, cls.__module__)))
            if isinstance(ann, str)
            else spec_from_runtime(ann)
        )
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out[f.name] = FieldSpec(
            f.name,
            spec,
            default,
            f.metadata.get("help", ""),
            bounds_from_metadata(f.metadata),
            f.metadata.get("fix", ""),
        )
    return out


def _literal_aliases(module_name: str) -> dict[str, tuple]:
    """The ``Name = Literal[...]`` aliases a module can see, by name: under ``from __future__ import annotations`` a
    field annotated with such an alias arrives as the bare name, which parse_annotation resolves like an enum."""
    module = sys.modules.get(module_name)
    return (
        {
            name: typing.get_args(value)
            for name, value in vars(module).items()
            if typing.get_origin(value) is typing.Literal
        }
        if module
        else {}
    )
