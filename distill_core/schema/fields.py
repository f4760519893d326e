"""One config field as the recipe loader sees it: type, default, help, and the numeric bounds it must respect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .types import TypeSpec


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: TypeSpec
    default: Any
    help: str
    # Limits a numeric value must respect, as (operator, limit) pairs such as ((">=", 1),). Declared on our own
    # dataclasses with ``metadata={"min": 1}`` (see BOUND_KEYS); TRL's classes carry none and check their own values.
    bounds: tuple[tuple[str, float], ...] = ()
    fix: str = ""  # how to fix a refused value, when "fix the value" says too little (metadata "fix")

    def describe_bounds(self) -> str:
        return " and ".join(f"{op} {limit:g}" for op, limit in self.bounds)


# metadata key -> the operator it stands for; a field may combine a lower and an upper bound
BOUND_KEYS: dict[str, str] = {"min": ">=", "exclusive_min": ">", "max": "<=", "exclusive_max": "<"}
FIELD_METADATA_KEYS = frozenset({"help", "fix", *BOUND_KEYS})
_HOLDS = {
    ">=": lambda v, lim: v >= lim,
    ">": lambda v, lim: v > lim,
    "<=": lambda v, lim: v <= lim,
    "<": lambda v, lim: v < lim,
}


def bounds_from_metadata(metadata: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(metadata, Mapping):
        return ()
    return tuple((op, metadata[key]) for key, op in BOUND_KEYS.items() if key in metadata)


def out_of_bounds(value: Any, spec: FieldSpec) -> str | None:
    """What is wrong with a (type-checked) value outside the field's bounds, e.g. "must be >= 1, got 0"; else None.

    Only numbers are checked: None (an optional key left unset) and the other members of a union pass. NaN
    compares false with everything, so it is refused by any bound.
    """
    if not spec.bounds or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if all(_HOLDS[op](value, limit) for op, limit in spec.bounds):
        return None
    return f"must be {spec.describe_bounds()}, got {value!r}"


class Computed:
    """Marks a default that is computed at run time and cannot be shown statically."""

    def __repr__(self) -> str:
        return "<computed>"


COMPUTED = Computed()
