"""Planning a merge: every output tensor, the input tensors it is made of, and its resolved parameters.

Parameters resolve, per tensor and per model, from the most specific setting that gives a value: the model's own
(``models[].parameters`` or a slice source's), the slice's, the recipe's ``parameters``, then the method's default.
A gradient's layer position is the layer's place within its slice (with ``models``, one slice spans every layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from distill_core.errors import RecipeError

from .config import GLOBAL_PARAMS, TENSOR_PARAMS, MergeSpec
from .inputs import ModelInput
from .methods import DELTA_RULES
from .params import UNSET, layer_index, layer_position, resolve

_LAYER_NUMBER = re.compile(r"((?:^|\.)layers\.)(\d+)(\.)")


@dataclass
class Job:
    name: str  # the output tensor
    base: tuple[str, str] | None  # (model, tensor) of the base, for the methods that use one
    sources: list[tuple[str, str]]  # (model, tensor) of each other input, in recipe order
    settings: dict[str, Any] = field(default_factory=dict)  # global parameters, resolved
    per_model: dict[str, list[Any]] = field(default_factory=dict)  # tensor parameters, one per source

    def describe(self, method: str) -> str:
        values = {**self.settings, **self.per_model}
        shown = "  ".join(f"{k}={_short(v)}" for k, v in values.items())
        return f"{self.name}  {method}  {shown}".rstrip()


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _defaults(method: str) -> dict[str, Any]:
    rule = DELTA_RULES.get(method)
    return {
        "density": 1.0,
        "normalize": rule.normalize if rule else True,
        "lambda": 1.0,
        "rescale": True,
        "filter_wise": False,
        "int8_mask": False,
    }


def output_layers(spec: MergeSpec, reference: ModelInput) -> list[tuple[int, int, int]]:
    """(slice index, layer within the slice, slice length) per output layer, in order."""
    out = []
    for s, sources in enumerate(spec.slices):
        span = sources[0].layer_range or [0, reference.layers]
        for source in sources:
            end = (source.layer_range or [0, reference.layers])[1]
            if end > reference.layers:
                raise RecipeError(f"slices[{s}]: layer_range ends at {end}; '{source.model}' has {reference.layers}")
        length = span[1] - span[0]
        out.extend((s, j, length) for j in range(length))
    return out


def plan_jobs(spec: MergeSpec, models: dict[str, ModelInput]) -> list[Job]:
    reference = models[spec.base or spec.models[0]]
    layer_names = sorted(n for n in reference.tensors if layer_index(n) == 0)
    jobs = [_job(spec, n, n, 0, 0.0) for n in sorted(reference.tensors) if layer_index(n) is None]
    for out_layer, (s, j, length) in enumerate(output_layers(spec, reference)):
        for template in layer_names:
            out_name = _LAYER_NUMBER.sub(lambda m: f"{m.group(1)}{out_layer}{m.group(3)}", template, count=1)
            jobs.append(_job(spec, out_name, template, s, layer_position(j, length), j))
    return jobs


def _source_name(template: str, source, within: int) -> str:
    if layer_index(template) is None:
        return template
    start = (source.layer_range or [0])[0]
    return _LAYER_NUMBER.sub(lambda m: f"{m.group(1)}{start + within}{m.group(3)}", template, count=1)


def _job(spec: MergeSpec, out_name: str, template: str, s: int, position: float, within: int = 0) -> Job:
    sources = spec.slices[s]
    method = spec.method
    base = None
    if method != "linear":
        base_source = next((src for src in sources if src.model == spec.base), sources[0])
        base = (spec.base, _source_name(template, base_source, within))
    members = [src for src in sources if method == "linear" or src.model != spec.base]
    job = Job(out_name, base, [(src.model, _source_name(template, src, within)) for src in members])
    defaults = _defaults(method)
    for param in GLOBAL_PARAMS[method]:
        job.settings[param] = _first(out_name, position, param, defaults, spec.slice_parameters[s], spec.parameters)
    for param in TENSOR_PARAMS[method]:
        job.per_model[param] = [
            _first(out_name, position, param, defaults, src.parameters, spec.slice_parameters[s], spec.parameters)
            for src in members
        ]
    job.settings.pop("int8_mask", None)  # accepted for mergekit recipes; the arithmetic here is float32 throughout
    return job


def _first(name: str, position: float, param: str, defaults: dict, *levels: dict) -> Any:
    for level in levels:
        value = resolve(level.get(param), name, position)
        if value is not UNSET:
            return value
    if param in defaults:
        return defaults[param]
    raise RecipeError(
        f"parameter '{param}' has no value for tensor {name}; set it in parameters (or each model's parameters), "
        "with a default entry if you use filters"
    )
