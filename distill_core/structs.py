"""YAML files read with one-line errors, and strict construction of small config dataclasses from their mappings
(teacher files, endpoint blocks, pipeline stages).

Same rules as the recipe loader: an unknown key is an error naming the closest valid key, values are
checked against the field types, required fields must be present.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any, TypeVar

import yaml

from .errors import RecipeError
from .schema import TypeMismatch, coerce, fields_of, out_of_bounds

T = TypeVar("T")


def did_you_mean(name: Any, choices, otherwise: str) -> str:
    """The fix for an unknown name: the closest of ``choices`` as a question, else ``otherwise``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else otherwise


def build_strict(cls: type[T], mapping: Any, where: str) -> T:
    if not isinstance(mapping, dict):
        raise RecipeError(f"{where} must be a mapping of key: value pairs, got {type(mapping).__name__}")
    specs = fields_of(cls)
    kwargs = {}
    for key, raw in mapping.items():
        if key not in specs:
            hint = did_you_mean(key, specs, f"valid keys are {sorted(specs)}")
            raise RecipeError(f"{where}: unknown key '{key}'; {hint}")
        spec = specs[key]
        try:
            kwargs[key] = coerce(raw, spec.type)
        except TypeMismatch:
            raise RecipeError(
                f"{where}: key '{key}' expects {spec.type.describe()}, got {raw!r}; {spec.fix or 'fix the value'}"
            ) from None
        problem = out_of_bounds(kwargs[key], spec)
        if problem:
            raise RecipeError(f"{where}: key '{key}' {problem}; {spec.fix or 'fix the value'}")
    for name, spec in specs.items():
        if spec.default is dataclasses.MISSING and name not in kwargs:
            raise RecipeError(f"{where}: required key '{name}' is missing")
    return cls(**kwargs)


def read_utf8(path: str) -> str:
    """A text file's contents; bytes that are not UTF-8 are a one-line RecipeError naming the line, not a traceback."""
    with open(path, "rb") as f:
        blob = f.read()
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = blob.count(b"\n", 0, exc.start) + 1
        raise RecipeError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{blob[exc.start]:02x}); save it as UTF-8"
        ) from None


def read_yaml(path: str, missing: str) -> tuple[str, Any]:
    """A YAML file's text and value. A missing file (``missing`` says so), bytes that are not UTF-8 and bad syntax
    are each a one-line RecipeError naming the file, and the line where there is one."""
    if not os.path.isfile(path):
        raise RecipeError(missing)
    text = read_utf8(path)
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RecipeError(f"{path}:{at}: {problem}; fix the YAML syntax") from None


def read_yaml_mapping(path: str, what: str) -> dict:
    _, data = read_yaml(path, f"{what} file '{path}' not found")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a {what} file is a mapping of key: value pairs")
    return data


def named_yaml_path(spec: str, folder: str, what: str, where: str) -> str:
    """The YAML file a name stands for (``folder/NAME.yaml``), or ``spec`` itself when it is a YAML path; a name
    with no file is refused, listing the names the folder has."""
    path = spec if spec.endswith((".yaml", ".yml")) else os.path.join(folder, f"{spec}.yaml")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
        raise RecipeError(f"{where}: {what} '{spec}' not found (no {path}); use one of {known} or a {what} YAML path")
    return path
