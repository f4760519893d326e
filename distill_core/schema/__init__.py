"""Field schemas of config dataclasses, read without importing them.

TRL's config classes inherit from ``transformers.TrainingArguments``; importing them pulls in torch,
peft and bitsandbytes (about 5 s). Recipes must be validated (and ``--help`` answered) before any of
that, so the field names, types, defaults and help texts are read from the installed packages' source
with :mod:`ast`. The schema therefore always matches the installed TRL and transformers versions.
Our own argument dataclasses import nothing heavy and are read by introspection.
"""

from __future__ import annotations

from .fields import BOUND_KEYS, COMPUTED, FIELD_METADATA_KEYS, Computed, FieldSpec, bounds_from_metadata, out_of_bounds
from .from_dataclass import dataclass_fields
from .from_source import DPO_CONFIG, MODEL_CONFIG, SFT_CONFIG, ClassRef, integration_names, source_fields
from .types import ANY, TypeMismatch, TypeSpec, coerce, parse_annotation

__all__ = [
    "ANY",
    "BOUND_KEYS",
    "COMPUTED",
    "DPO_CONFIG",
    "FIELD_METADATA_KEYS",
    "MODEL_CONFIG",
    "SFT_CONFIG",
    "ClassRef",
    "Computed",
    "FieldSpec",
    "TypeMismatch",
    "TypeSpec",
    "bounds_from_metadata",
    "coerce",
    "fields_of",
    "integration_names",
    "out_of_bounds",
    "parse_annotation",
]


def fields_of(cls: ClassRef | type) -> dict[str, FieldSpec]:
    """Every init field of a config class, by name, base-class fields first and overrides applied."""
    if isinstance(cls, type):
        return dataclass_fields(cls)
    return source_fields(cls)
