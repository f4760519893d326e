"""Merge parameters resolved per tensor, as mergekit reads them.

A parameter's setting is one of:

- a scalar (a number or a boolean): the same value for every tensor;
- a list of numbers: a gradient over the layer position ``p = layer / (layers - 1)``, the numbers spread evenly
  over [0, 1] and interpolated piecewise-linearly between them (``[0, 1]`` over 32 layers gives layer 8 the value
  8/31); tensors outside the layers (embeddings, the final norm, the LM head) take position 0;
- a list of ``{filter, value}`` entries: the first entry whose filter is a substring of the tensor's name gives the
  value (itself a scalar or a gradient); an entry without a filter is the default for the names no filter matches.

Nothing here imports torch: the recipe is checked, and a dry run resolved, before any tensor is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from distill_core.errors import RecipeError
from distill_core.structs import build_strict

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET = _Unset()  # a setting that gives no value for a tensor (no filter matched and no default entry)


@dataclass
class FilterEntry:
    value: Any  # a scalar or a gradient
    filter: str | None = None  # a substring of the tensor names this value applies to; none: the default


def layer_index(name: str) -> int | None:
    """The decoder layer a tensor belongs to (``model.layers.7.mlp.up_proj.weight`` -> 7), or None."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def layer_position(layer: int | None, layers: int) -> float:
    """Where a layer sits in [0, 1] among ``layers`` layers; tensors outside the layers are at 0."""
    if layer is None or layers <= 1:
        return 0.0
    return layer / (layers - 1)


def gradient_value(points: list[float], position: float) -> float:
    """The piecewise-linear interpolation of ``points`` (spread evenly over [0, 1]) at ``position``."""
    if len(points) == 1:
        return float(points[0])
    scaled = min(max(position, 0.0), 1.0) * (len(points) - 1)
    left = min(int(scaled), len(points) - 2)
    frac = scaled - left
    return float(points[left]) + (float(points[left + 1]) - float(points[left])) * frac


def resolve(setting: Any, name: str, position: float) -> Any:
    """The value a (checked) setting gives the tensor ``name`` at layer position ``position``, or UNSET."""
    if setting is None:
        return UNSET
    if isinstance(setting, list) and setting and isinstance(setting[0], FilterEntry):
        default = UNSET
        for entry in setting:
            if entry.filter is None:
                default = entry.value if default is UNSET else default
            elif entry.filter in name:
                return resolve(entry.value, name, position)
        return resolve(default, name, position) if default is not UNSET else UNSET
    if isinstance(setting, list):
        return gradient_value(setting, position)
    return setting


def check_setting(raw: Any, where: str) -> Any:
    """A setting as written in the recipe, checked and with its filter entries built; a RecipeError if malformed."""
    if isinstance(raw, list) and raw and all(isinstance(e, dict) for e in raw):
        entries = [build_strict(FilterEntry, e, f"{where}[{i}]") for i, e in enumerate(raw)]
        for i, entry in enumerate(entries):
            if isinstance(entry.value, list) and entry.value and isinstance(entry.value[0], dict):
                raise RecipeError(f"{where}[{i}]: a filter's value is a number or a gradient list, not more filters")
            entry.value = _check_plain(entry.value, f"{where}[{i}].value")
        return entries
    return _check_plain(raw, where)


def _check_plain(raw: Any, where: str) -> Any:
    if isinstance(raw, (bool, int, float)):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return [float(v) for v in raw]
    raise RecipeError(
        f"{where}: expected a number, a gradient list of numbers or a list of {{filter, value}} entries, got {raw!r}"
    )
