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
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .errors import RecipeError, first_line
from .schema import COMPUTED, ClassRef, FieldSpec, TypeMismatch, coerce, fields_of, integration_names, out_of_bounds
from .structs import read_utf8

# Keys that recipes written for older TRL/transformers/alignment-handbook versions still carry. Each was checked
# against the installed TRL 1.16 SFTConfig/DPOConfig/ModelConfig and transformers 5 TrainingArguments.
# RENAMED: the same setting under another name (the error shows the line to write); REMOVED: what replaced it.
RENAMED_KEYS: dict[str, tuple[str, str]] = {  # old -> (new, since when)
    "max_seq_length": ("max_length", "in TRL 0.20"),
    "torch_dtype": ("dtype", "in transformers 5"),
    "evaluation_strategy": ("eval_strategy", "in transformers 4.46"),
    "preprocessing_num_workers": ("dataset_num_proc", "in TRL (the alignment-handbook name)"),
    "text_column": ("dataset_text_field", "in TRL's SFTConfig (the alignment-handbook name)"),
    "hub_model_revision": ("hub_revision", "in transformers TrainingArguments (the alignment-handbook name)"),
    "use_liger": ("use_liger_kernel", "in TRL (the transformers name)"),
}
REMOVED_KEYS: dict[
    str, tuple[str, str]
] = {  # key -> (what happened to it, the fix); no semicolons: problems share a line
    "max_prompt_length": (
        "a DPO key here (TRL 1.x removed it from DPOConfig; our DPO recipes cut prompts with it)",
        "remove it from this recipe: SFT caps whole sequences with max_length",
    ),
    "max_completion_length": ("removed from DPOConfig in TRL 1.x", "use max_length with truncation_mode"),
    "max_target_length": ("removed from DPOConfig in TRL 1.x", "use max_length"),
    "setup_chat_format": (
        "removed in TRL 1.x",
        "set chat_template in the recipe, or rely on the Zephyr template fallback",
    ),
    "use_flash_attention_2": ("replaced by attn_implementation", "write attn_implementation: flash_attention_2"),
    "overwrite_output_dir": (
        "removed in transformers 5",
        "remove it: a run resumes from output_dir checkpoints with resume_from_checkpoint",
    ),
    "logging_dir": ("removed in transformers 5", "remove it: tensorboard logs go under output_dir/runs"),
    "warmup_ratio": (
        "removed in transformers 5",
        "write warmup_steps: 0.1, a value below 1 being a fraction of all steps",
    ),
    "dataset_mixer": (
        "replaced by dataset_mixture",
        "write dataset_mixture: {datasets: [{id, split, test_split, columns, weight}, ...]}",
    ),
    "dataset_splits": ("replaced by split and test_split on each dataset_mixture entry", "move the split names there"),
    "dataset_configs": ("replaced by config on each dataset_mixture entry", "move the config names there"),
    "dataset_name": (
        "TRL's single-dataset key is not used here",
        "write dataset_mixture: {datasets: [{id: NAME, split: train}]}",
    ),
    "dataset_config": ("TRL's single-dataset key is not used here", "write config on the dataset_mixture entry"),
    "dataset_train_split": ("TRL's single-dataset key is not used here", "write split on the dataset_mixture entry"),
    "dataset_test_split": (
        "TRL's single-dataset key is not used here",
        "write test_split on the dataset_mixture entry",
    ),
    "truncation_side": (
        "not a TRL key",
        "remove it: sequences longer than max_length are cut as truncation_mode says",
    ),
    "auto_insert_empty_system_msg": (
        "not a TRL key",
        "remove it: the chat template renders the messages as given, "
        "so add a system message to the data if the template needs one",
    ),
    "tokenizer_name_or_path": ("not a TRL key", "save the tokenizer with the model: it loads from model_name_or_path"),
    "rpo_alpha": (
        "removed from DPOConfig in TRL 1.x",
        "write loss_type: [sigmoid, sft] with loss_weights: [1.0, ALPHA]",
    ),
    "ref_model_init_kwargs": (
        "removed from DPOConfig in TRL 1.x",
        "remove it: the reference loads like the policy, see ref_mode and ref_model_name_or_path",
    ),
    "generate_during_eval": ("removed from DPOConfig in TRL 1.x", "remove it"),
}

# Valid config fields that hold a secret: a recipe and its overrides are copied into manifests and model cards.
SECRET_KEYS: dict[str, str] = {"hub_token": "export HF_TOKEN or run `hf auth login` instead"}


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
            first = first_line(exc)
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
    text = read_utf8(path)
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

    # every bad key is collected, so a recipe from another project is fixed in one run, not one run per key
    problems: list[KeyProblem] = []
    values: dict[str, Any] = {}
    routed: dict[str, dict[str, Any]] = {s.name: {} for s in sections}
    for mapping, on_command_line in ((data, False), (overrides, True)):
        for key, raw in mapping.items():
            key = str(key)
            if key in SECRET_KEYS:  # never echoed: the value is the secret
                problems.append(
                    KeyProblem(
                        f"key '{key}' would copy a secret into the run's manifest and model card",
                        SECRET_KEYS[key],
                        f"--{key}" if on_command_line else "",
                    )
                )
                continue
            owners = [s for s in sections if key in schemas[s.name]]
            if not owners:
                problems.append(_unknown_key(key, raw, known, on_command_line))
                continue
            for s in owners:
                spec = schemas[s.name][key]
                try:
                    value = _normalize(key, coerce(raw, spec.type))
                except TypeMismatch as exc:
                    problems.append(_type_problem(key, raw, spec, on_command_line, exc.args))
                    break
                routed[s.name][key] = value
                values[key] = value
    # bounds are checked on the merged values: a command-line override may correct a recipe's value
    for key, value in values.items():
        for spec in (schemas[s.name][key] for s in sections if key in schemas[s.name]):
            problem = out_of_bounds(value, spec)
            if problem:
                problems.append(
                    KeyProblem(
                        f"key '{key}' {problem}", spec.fix or "fix the value", f"--{key}" if key in overrides else ""
                    )
                )
                break
    given = {str(k) for k in data} | set(overrides)
    for s in sections:  # required fields without defaults
        for name, spec in schemas[s.name].items():
            if spec.default is dataclasses.MISSING and name not in routed[s.name] and name not in given:
                problems.append(KeyProblem(f"required key '{name}' is missing", f"add '{name}: ...' to the recipe"))
    if problems:
        raise RecipeError(describe_problems(path, problems))

    recipe = Recipe(path, routed, values, text, overrides=list(argv), _classes={s.name: s.cls for s in sections})
    if recipe.get("push_to_hub") and any("push_to_hub" in fields for fields in schemas.values()):
        from .hub import check_push_to_hub

        check_push_to_hub(recipe)
    if check is not None:
        check(recipe)
    return recipe


def check_output_dir(recipe: Recipe, key: str = "output_dir") -> None:
    """Refuse, at validation, an output directory the run could not write: an existing file, a path under a file,
    or a place this user may not create it. A missing key is the caller's rule (some scripts default it).

    Writability is probed by creating and removing a directory, not read from permission bits: root passes any
    access() check, and read-only mounts or ACLs only show when something is created.
    """
    path = recipe.get(key)
    if not path:
        return
    full = os.path.abspath(os.path.expanduser(str(path)))
    where = f"{recipe.path}: {key} '{path}'"
    if os.path.exists(full) and not os.path.isdir(full):
        raise RecipeError(f"{where} is an existing file, not a directory; choose another {key} or move the file away")
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RecipeError(f"{where} cannot be created: '{existing}' is a file, not a directory; choose another {key}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RecipeError(
            f"{where} cannot be {'written' if existing == full else 'created'}: {reason} in '{existing}'; "
            f"choose a directory this user can write as {key}"
        ) from None


@dataclass(frozen=True)
class KeyProblem:
    """One bad key: what is wrong, how to fix it, and whether it came from the command line."""

    subject: str  # "unknown key 'foo'"
    fix: str  # "did you mean 'bar'?"
    flag: str = ""  # "--foo" when the key was a command-line override

    def alone(self, path: str) -> str:
        where = f"command line override {self.flag} (recipe {path})" if self.flag else path
        return f"{where}: {self.subject}; {self.fix}"

    def listed(self) -> str:
        where = f"command line {self.flag}: " if self.flag else ""
        return f"{where}{self.subject} ({self.fix})"


def describe_problems(path: str, problems: list[KeyProblem]) -> str:
    """One line for all of a recipe's bad keys."""
    if len(problems) == 1:
        return problems[0].alone(path)
    return f"{path}: {len(problems)} keys to fix: " + "; ".join(p.listed() for p in problems)


def _unknown_key(key: str, raw: Any, known: list[str], on_command_line: bool) -> KeyProblem:
    flag = f"--{key}" if on_command_line else ""
    if key in RENAMED_KEYS:
        new, since = RENAMED_KEYS[key]
        if new not in known:
            return KeyProblem(
                f"key '{key}' is no longer supported: renamed to '{new}' {since}",
                f"remove it: this script has no '{new}'",
                flag,
            )
        shown = f"--{new} {_yaml_scalar(raw)}" if on_command_line else f"{new}: {_yaml_scalar(raw)}"
        return KeyProblem(f"key '{key}' is no longer supported: renamed to '{new}' {since}", f"write {shown}", flag)
    if key in REMOVED_KEYS:
        reason, fix = REMOVED_KEYS[key]
        return KeyProblem(f"key '{key}' is no longer supported: {reason}", fix, flag)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return KeyProblem(
        f"unknown key '{key}'", f"did you mean '{close[0]}'?" if close else "see --help for the valid keys", flag
    )


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _normalize(key: str, value: Any) -> Any:
    """Values a config class's annotation admits but its runtime does not. Refuses with TypeMismatch(what, fix)."""
    if key == "report_to":
        return _report_to(value)
    if key == "dataset_kwargs" and isinstance(value, dict):
        extra = sorted(set(value) - {"skip_prepare_dataset"})
        if extra:
            raise TypeMismatch(
                f"TRL 1.x reads only skip_prepare_dataset from dataset_kwargs and would ignore {extra}",
                "remove them: the chat template writes BOS and EOS",
            )
    return value


def _report_to(value: Any) -> Any:
    # transformers 5 takes the strings "none" and "all" or a list of integration names, and fails at trainer start
    # on None (which the annotation allows and which a YAML "none" would otherwise become)
    names = [] if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]
    lowered = [n.lower() for n in names]
    if lowered in ([], ["none"], ["null"]):
        return "none"
    if lowered == ["all"]:
        return "all"
    valid = integration_names()
    bad = [n for n in names if n not in valid] if valid else []  # no list found in this transformers: TRL checks
    if bad:
        close = difflib.get_close_matches(bad[0], valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"use none, all or a list of {', '.join(valid)}"
        raise TypeMismatch(f"'{bad[0]}' is not a reporting integration", hint)
    return names


def _type_problem(key: str, raw: Any, spec: FieldSpec, on_command_line: bool, refusal: tuple) -> KeyProblem:
    flag = f"--{key}" if on_command_line else ""
    if refusal:  # the value has the right type, but _normalize refused it: (what is wrong, the fix)
        return KeyProblem(f"key '{key}': {refusal[0]}", refusal[1], flag)
    choices = [
        str(v)
        for t in (spec.type.args if spec.type.kind == "union" else (spec.type,))
        if t.kind == "choice"
        for v in t.args
    ]
    close = difflib.get_close_matches(str(raw), choices, n=1, cutoff=0.5) if choices else []
    fix = f"did you mean '{close[0]}'?" if close else (spec.fix or "fix the value")
    shown = spec.type.describe()
    if len(shown) > 160:
        shown = shown[:157] + "..."
    return KeyProblem(f"key '{key}' expects {shown}, got {raw!r} ({type(raw).__name__})", fix, flag)


def describe_sections(sections: list[Section]) -> str:
    """The valid keys of each section, with type, default and the first sentence of their help."""
    lines = []
    for s in sections:
        cls_name = s.cls.name if isinstance(s.cls, ClassRef) else s.cls.__name__
        lines.append(f"\n{s.name} keys ({cls_name}):")
        lines.extend(_describe_field(spec) for spec in fields_of(s.cls).values())
    return "\n".join(lines)


def _describe_field(spec: FieldSpec) -> str:
    default = (
        "required"
        if spec.default is dataclasses.MISSING
        else ("<computed>" if spec.default is COMPUTED else repr(spec.default))
    )
    text = spec.help.split(". ")[0].strip()
    if len(text) > 110:
        text = text[:107] + "..."
    kind = spec.type.describe() + (f", {spec.describe_bounds()}" if spec.bounds else "")
    return f"  --{spec.name}  ({kind}, default {default})  {text}"
