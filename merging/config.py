"""The merge recipe: mergekit's config keys as they are, plus ``output_dir``, ``seed``, ``dry_run`` and
``max_shard_size_mb``.

A mergekit YAML loads unchanged when it uses ``merge_method``, ``models`` or ``slices``, ``base_model``,
``parameters``, ``dtype``, ``out_dtype`` and ``tokenizer_source`` (``base`` or a model path). What differs is
documented in the README: ``tokenizer_source: union`` is refused (mergekit's union tokenizer breaks tokenizers),
``model+lora`` references are written as the adapter directory itself, and the output directory is the recipe's
``output_dir`` rather than a command-line argument. Every unknown key, at any depth, is an error with a did-you-mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from distill_core.errors import RecipeError
from distill_core.recipe import Recipe, check_output_dir
from distill_core.structs import build_strict, did_you_mean

from .params import check_setting

MergeMethod = Literal["linear", "slerp", "task_arithmetic", "ties", "dare_ties", "dare_linear", "model_stock"]
DType = Literal["float32", "float16", "bfloat16"]

TENSOR_PARAMS = {  # per-model parameters (a global value is their default), by method
    "linear": ("weight",),
    "slerp": (),
    "task_arithmetic": ("weight",),
    "ties": ("weight", "density"),
    "dare_ties": ("weight", "density"),
    "dare_linear": ("weight", "density"),
    "model_stock": (),
}
_DELTA_GLOBALS = ("normalize", "lambda", "int8_mask")
GLOBAL_PARAMS = {  # parameters of the whole merge, by method
    "linear": ("normalize",),
    "slerp": ("t",),
    "task_arithmetic": _DELTA_GLOBALS,
    "ties": _DELTA_GLOBALS,
    "dare_ties": _DELTA_GLOBALS + ("rescale",),
    "dare_linear": _DELTA_GLOBALS + ("rescale",),
    "model_stock": ("filter_wise",),
}


@dataclass
class MergeArguments:
    merge_method: MergeMethod = field(metadata={"help": "How tensors are combined (mergekit's names)."})
    models: Optional[list] = field(
        default=None, metadata={"help": "The inputs: each {model: DIR_OR_ID, parameters: {...}} (or slices)."}
    )
    slices: Optional[list] = field(
        default=None, metadata={"help": "Layer ranges: each {sources: [{model, layer_range: [a, b], parameters}]}."}
    )
    base_model: Optional[str] = field(
        default=None, metadata={"help": "The base (t = 0 for slerp; the origin of deltas for the task methods)."}
    )
    parameters: Optional[dict] = field(
        default=None, metadata={"help": "Method parameters: scalars, per-layer gradient lists or {filter, value}."}
    )
    dtype: Optional[DType] = field(default=None, metadata={"help": "Output dtype (default: the base's dtype)."})
    out_dtype: Optional[DType] = field(default=None, metadata={"help": "Output dtype, over dtype (as in mergekit)."})
    tokenizer_source: Optional[str] = field(
        default=None,
        metadata={"help": "Take the tokenizer from 'base' or a named input even when the inputs' tokenizers differ."},
    )
    output_dir: str = field(default="runs/merge", metadata={"help": "Where the merged model is written."})
    seed: int = field(default=0, metadata={"help": "Seed of DARE's random drops."})
    dry_run: bool = field(
        default=False, metadata={"help": "Print each tensor's method and parameters; write nothing."}
    )
    max_shard_size_mb: float = field(
        default=5000.0, metadata={"help": "Largest output shard, in MB.", "exclusive_min": 0}
    )


@dataclass
class ModelEntry:
    model: str
    parameters: Optional[dict] = None


@dataclass
class SliceSource:
    model: str
    layer_range: Optional[list] = None  # [start, end), None: every layer
    parameters: Optional[dict] = None


@dataclass
class SliceEntry:
    sources: list
    parameters: Optional[dict] = None


@dataclass
class MergeSpec:
    """The recipe's structure, checked: what run.py plans from."""

    method: str
    base: str | None
    models: list[str]  # every input, the base included, in the order first named
    slices: list[list[SliceSource]]  # one slice when the recipe lists `models`
    parameters: dict[str, Any]  # global settings (checked by params.check_setting)
    slice_parameters: list[dict[str, Any]] = field(default_factory=list)


def check_merge(recipe: Recipe) -> None:
    """Cross-key rules; the structured spec goes to ``recipe.parsed['merge']``, the arguments (defaults filled in)
    to ``recipe.parsed['args']``."""
    where = recipe.path
    args = recipe.build("merge")
    method = args.merge_method
    if (args.models is None) == (args.slices is None):
        raise RecipeError(f"{where}: give exactly one of 'models' and 'slices'")
    if args.tokenizer_source == "union":
        raise RecipeError(
            f"{where}: tokenizer_source 'union' is not supported (it changes the vocabulary the inputs were trained "
            "on); name 'base' or one input model"
        )
    if args.slices is not None:
        slices, slice_params = _read_slices(args.slices, method, where)
    else:
        entries = _entries(args.models, ModelEntry, f"{where}: models")
        slices = [[SliceSource(e.model, None, _params(e.parameters, method, f"{where}: models[{i}]", True))
                   for i, e in enumerate(entries)]]  # fmt: skip
        slice_params = [{}]
    base = args.base_model
    models = list(dict.fromkeys(([base] if base else []) + [s.model for sl in slices for s in sl]))
    spec = MergeSpec(method, base, models, slices, _params(args.parameters, method, where, False))
    spec.slice_parameters = slice_params
    _check_counts(spec, where)
    if args.tokenizer_source not in (None, "base", *models):
        raise RecipeError(
            f"{where}: tokenizer_source '{recipe.get('tokenizer_source')}' is not an input; name 'base' or one of "
            f"{models}"
        )
    if not args.dry_run:
        check_output_dir(recipe)
    recipe.parsed["merge"] = spec
    recipe.parsed["args"] = args


def _entries(raw: Any, cls: type, where: str) -> list:
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"{where}: expected a non-empty list of mappings")
    return [build_strict(cls, item, f"{where}[{i}]") for i, item in enumerate(raw)]


def _read_slices(raw: Any, method: str, where: str) -> tuple[list[list[SliceSource]], list[dict]]:
    slices, slice_params = [], []
    for i, entry in enumerate(_entries(raw, SliceEntry, f"{where}: slices")):
        sources = _entries(entry.sources, SliceSource, f"{where}: slices[{i}].sources")
        lengths = set()
        for j, source in enumerate(sources):
            span = source.layer_range
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)) or (
                span[0] < 0 or span[1] <= span[0]
            ):
                raise RecipeError(
                    f"{where}: slices[{i}].sources[{j}].layer_range must be [start, end) with start < end"
                )
            lengths.add(span[1] - span[0])
            source.parameters = _params(source.parameters, method, f"{where}: slices[{i}].sources[{j}]", True)
        if len(lengths) != 1:
            raise RecipeError(f"{where}: slices[{i}]: every source's layer_range must span the same number of layers")
        slices.append(sources)
        slice_params.append(_params(entry.parameters, method, f"{where}: slices[{i}]", False))
    names = [sorted({s.model for s in sl}) for sl in slices]
    if any(n != names[0] for n in names):
        raise RecipeError(f"{where}: every slice must name the same models (got {names}); merge each set separately")
    return slices, slice_params


def _params(raw: Any, method: str, where: str, per_model: bool) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: parameters must be a mapping of name: setting")
    valid = TENSOR_PARAMS[method] + (() if per_model else GLOBAL_PARAMS[method])
    out = {}
    for name, setting in raw.items():
        if name not in valid:
            hint = did_you_mean(name, valid, f"{method} takes {list(valid) or 'no parameters'}")
            raise RecipeError(f"{where}: unknown parameter '{name}' for {method}; {hint}")
        out[name] = check_setting(setting, f"{where}: parameters.{name}")
    return out


def _check_counts(spec: MergeSpec, where: str) -> None:
    others = [m for m in spec.models if m != spec.base]
    needs_base = spec.method != "linear"
    if needs_base and not spec.base:
        raise RecipeError(f"{where}: {spec.method} needs base_model; name the model the others are measured from")
    if spec.method == "slerp" and len(others) != 1:
        raise RecipeError(f"{where}: slerp merges the base with exactly one other model, got {len(others)} others")
    if spec.method == "model_stock" and len(others) < 2:
        raise RecipeError(f"{where}: model_stock needs at least two models besides the base, got {len(others)}")
    if spec.method not in ("slerp", "model_stock", "linear") and not others:
        raise RecipeError(f"{where}: {spec.method} needs at least one model besides the base")
