"""The one config loader: a YAML recipe plus ``--key value`` overrides, validated strictly.

A recipe is a flat YAML mapping, exactly like TRL's and the alignment-handbook's: each key belongs to one
or more config sections (TRL's ``SFTConfig``/``DPOConfig``/``ModelConfig`` and our own script arguments).
Every key is checked (name, type) before anything heavy is imported; the TRL classes themselves are only
built by :meth:`Recipe.build` once validation has passed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .errors import RecipeError
from .schema import COMPUTED, ClassRef, FieldSpec, TypeMismatch, coerce, fields_of

# Keys that recipes written for older TRL/transformers/handbook versions still carry, with what replaced them.
REMOVED_KEYS: dict[str, str] = {
    "max_seq_length": "renamed to 'max_length' in TRL 0.20; use max_length",
    "max_prompt_length": "removed from DPOConfig in TRL 1.x; use max_length with truncation_mode (see the zephyr dpo recipe)",
    "max_completion_length": "removed from DPOConfig in TRL 1.x; use max_length with truncation_mode",
    "max_target_length": "removed from DPOConfig in TRL 1.x; use max_length",
    "setup_chat_format": "removed in TRL 1.x; set chat_template in the recipe (the Zephyr template is the fallback)",
    "torch_dtype": "renamed to 'dtype' in transformers 5; use dtype",
    "use_flash_attention_2": "replaced by 'attn_implementation: flash_attention_2'",
    "evaluation_strategy": "renamed to 'eval_strategy' in transformers 4.46; use eval_strategy",
    "overwrite_output_dir": "removed in transformers 5; a run resumes from output_dir checkpoints with resume_from_checkpoint",
    "logging_dir": "removed in transformers 5; tensorboard logs go under output_dir/runs",
    "warmup_ratio": "removed in transformers 5; write warmup_steps: 0.1 (a value below 1 is a fraction of total steps)",
    "dataset_mixer": "replaced by 'dataset_mixture' (a list of datasets with id, split, columns, weight)",
    "dataset_splits": "replaced by 'split' and 'test_split' on each dataset_mixture entry",
}


@dataclass(frozen=True)
class Section:
    """One config class a recipe's keys are routed to."""

    name: str  # e.g. "training"
    cls: ClassRef | type


@dataclass
class Recipe:
    path: str
    sections: dict[str, dict[str, Any]]  # section name -> validated kwargs given by the recipe
    values: dict[str, Any]  # every key the recipe or the command line set, validated
    text: str  # the YAML as written, for cards and manifests
    overrides: list[str] = field(default_factory=list)
    parsed: dict[str, Any] = field(default_factory=dict)  # structured values a check() derived (e.g. a data mixture)
    _classes: dict[str, ClassRef | type] = field(default_factory=dict, repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def sha256(self) -> str:
        blob = self.text + "\n" + "\n".join(self.overrides)
        return hashlib.sha256(blob.encode()).hexdigest()

    def build(self, section: str, **forced: Any) -> Any:
        """Instantiate a section's config class (imports it) with the recipe's values plus ``forced`` ones."""
        cls = self._classes[section]
        klass = cls.load() if isinstance(cls, ClassRef) else cls
        kwargs = {**self.sections.get(section, {}), **forced}
        try:
            return klass(**kwargs)
        except (ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecipeError(f"{self.path}: building {klass.__name__} failed: {first}") from None


def parse_overrides(argv: list[str], where: str = "command line") -> dict[str, Any]:
    """``--key value``, ``--key=value`` and a bare ``--flag`` (true). Values are read as YAML scalars."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise RecipeError(f"{where}: unexpected argument {arg!r}; overrides are written --key value")
        key, eq, raw = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                raw = argv[i + 1]
                i += 1
            else:
                raw = "true"
        try:
            out[key] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            out[key] = raw
        i += 1
    return out


def load_recipe(
    path: str,
    argv: list[str],
    sections: list[Section],
    check: Callable[[Recipe], None] | None = None,
) -> Recipe:
    """Read, merge and validate a recipe. Raises RecipeError with a one-line message on any problem."""
    if not os.path.isfile(path):
        raise RecipeError(f"recipe {path!r} not found; pass the path of a YAML file such as recipes/smoke/sft.yaml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RecipeError(f"{path}:{at}: {problem}; fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of key: value pairs, got a {type(data).__name__}")

    overrides = parse_overrides(argv)
    schemas = {s.name: fields_of(s.cls) for s in sections}
    known = sorted({name for fields in schemas.values() for name in fields})

    values: dict[str, Any] = {}
    routed: dict[str, dict[str, Any]] = {s.name: {} for s in sections}
    for source, mapping in ((path, data), ("command line", overrides)):
        for key, raw in mapping.items():
            where = path if source == path else f"command line override --{key} (recipe {path})"
            owners = [s for s in sections if key in schemas[s.name]]
            if not owners:
                raise RecipeError(_unknown_key_message(str(key), where, known))
            for s in owners:
                spec = schemas[s.name][key]
                try:
                    value = coerce(raw, spec.type)
                except TypeMismatch:
                    raise RecipeError(_type_message(key, raw, spec, where)) from None
                routed[s.name][key] = value
                values[key] = value

    recipe = Recipe(path, routed, values, text, overrides=list(argv), _classes={s.name: s.cls for s in sections})
    for s in sections:  # required fields without defaults
        for name, spec in schemas[s.name].items():
            if spec.default is dataclasses.MISSING and name not in routed[s.name]:
                raise RecipeError(f"{path}: required key '{name}' is missing; add '{name}: ...' to the recipe")
    if check is not None:
        check(recipe)
    return recipe


def _unknown_key_message(key: str, where: str, known: list[str]) -> str:
    if key in REMOVED_KEYS:
        return f"{where}: key '{key}' is no longer supported: {REMOVED_KEYS[key]}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else "see --help for the valid keys"
    return f"{where}: unknown key '{key}'; {hint}"


def _type_message(key: str, raw: Any, spec: FieldSpec, where: str) -> str:
    choices = [str(v) for t in (spec.type.args if spec.type.kind == "union" else (spec.type,))
               if t.kind == "choice" for v in t.args]
    close = difflib.get_close_matches(str(raw), choices, n=1, cutoff=0.5) if choices else []
    fix = f"did you mean '{close[0]}'?" if close else "fix the value"
    shown = spec.type.describe()
    if len(shown) > 160:
        shown = shown[:157] + "..."
    return f"{where}: key '{key}' expects {shown}, got {raw!r} ({type(raw).__name__}); {fix}"


def describe_sections(sections: list[Section]) -> str:
    """The valid keys of each section, with type, default and the first sentence of their help."""
    lines = []
    for s in sections:
        cls_name = s.cls.name if isinstance(s.cls, ClassRef) else s.cls.__name__
        lines.append(f"\n{s.name} keys ({cls_name}):")
        lines.extend(_describe_field(spec) for spec in fields_of(s.cls).values())
    return "\n".join(lines)


def _describe_field(spec: FieldSpec) -> str:
    default = "required" if spec.default is dataclasses.MISSING else ("<computed>" if spec.default is COMPUTED else repr(spec.default))
    text = spec.help.split(". ")[0].strip()
    if len(text) > 110:
        text = text[:107] + "..."
    return f"  --{spec.name}  ({spec.type.describe()}, default {default})  {text}"
