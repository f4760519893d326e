"""A recipe's keys checked against its sections' fields: each routed to the sections that own it, its value
converted and bounded. Every bad key is collected, so a recipe from another project is fixed in one run, not one
run per key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import RecipeError
from .legacy_keys import REMOVED_KEYS, RENAMED_KEYS
from .schema import FieldSpec, TypeMismatch, coerce, integration_names, out_of_bounds
from .structs import did_you_mean

# Valid config fields that hold a secret: a recipe and its overrides are copied into manifests and model cards.
SECRET_KEYS: dict[str, str] = {"hub_token": "export HF_TOKEN or run `hf auth login` instead"}

Schemas = dict[str, dict[str, FieldSpec]]  # section name -> its fields by name, in the order of the sections


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


def route_keys(
    path: str, data: dict, overrides: dict[str, Any], schemas: Schemas
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The validated values by section and by key, the overrides applied over the recipe's ``data``.

    Raises one RecipeError naming every bad key: unknown, renamed, removed, secret, mistyped, out of bounds or missing.
    """
    known = sorted({name for fields in schemas.values() for name in fields})
    problems: list[KeyProblem] = []
    values: dict[str, Any] = {}
    routed: dict[str, dict[str, Any]] = {section: {} for section in schemas}
    for mapping, on_command_line in ((data, False), (overrides, True)):
        for key, raw in mapping.items():
            key = str(key)
            problem = _route_key(key, raw, on_command_line, schemas, known, routed, values)
            if problem is not None:
                problems.append(problem)
    problems += _bound_problems(values, overrides, schemas)
    given = {str(k) for k in data} | set(overrides)
    for section, fields in schemas.items():  # required fields without defaults
        for name, spec in fields.items():
            if spec.default is dataclasses.MISSING and name not in routed[section] and name not in given:
                problems.append(KeyProblem(f"required key '{name}' is missing", f"add '{name}: ...' to the recipe"))
    if problems:
        raise RecipeError(describe_problems(path, problems))
    return routed, values


def _route_key(
    key: str,
    raw: Any,
    on_command_line: bool,
    schemas: Schemas,
    known: list[str],
    routed: dict[str, dict[str, Any]],
    values: dict[str, Any],
) -> KeyProblem | None:
    """Store one key's value under each section that owns it, or say what is wrong with it."""
    if key in SECRET_KEYS:  # never echoed: the value is the secret
        return KeyProblem(
            f"key '{key}' would copy a secret into the run's manifest and model card",
            SECRET_KEYS[key],
            f"--{key}" if on_command_line else "",
        )
    owners = [section for section, fields in schemas.items() if key in fields]
    if not owners:
        return _unknown_key(key, raw, known, on_command_line)
    for section in owners:
        spec = schemas[section][key]
        try:
            value = _normalize(key, coerce(raw, spec.type))
        except TypeMismatch as exc:
            return _type_problem(key, raw, spec, on_command_line, exc.args)
        routed[section][key] = value
        values[key] = value
    return None


def _bound_problems(values: dict[str, Any], overrides: dict[str, Any], schemas: Schemas) -> list[KeyProblem]:
    # bounds are checked on the merged values: a command-line override may correct a recipe's value
    problems = []
    for key, value in values.items():
        for spec in (fields[key] for fields in schemas.values() if key in fields):
            problem = out_of_bounds(value, spec)
            if problem:
                problems.append(
                    KeyProblem(
                        f"key '{key}' {problem}", spec.fix or "fix the value", f"--{key}" if key in overrides else ""
                    )
                )
                break
    return problems


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
    return KeyProblem(f"unknown key '{key}'", did_you_mean(key, known, "see --help for the valid keys"), flag)


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
        hint = did_you_mean(bad[0], valid, f"use none, all or a list of {', '.join(valid)}")
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
    fix = did_you_mean(raw, choices, spec.fix or "fix the value")
    shown = spec.type.describe()
    if len(shown) > 160:
        shown = shown[:157] + "..."
    return KeyProblem(f"key '{key}' expects {shown}, got {raw!r} ({type(raw).__name__})", fix, flag)
