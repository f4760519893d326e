"""Field schemas of TRL's and transformers' config classes, read from the installed packages' source with ast.

Importing those classes costs torch, peft and bitsandbytes; reading their source costs a few milliseconds and
always matches the installed versions.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .fields import COMPUTED, FieldSpec
from .types import parse_annotation


@dataclass(frozen=True)
class ClassRef:
    """Where a config class lives: its import path, and the source files holding it and its bases."""

    import_path: str  # "package.module:ClassName"
    files: tuple[tuple[str, str], ...]  # (top-level package, file relative to it), subclass first, base last
    enum_files: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.import_path.split(":")[1]

    def load(self) -> type:
        module, _, name = self.import_path.partition(":")
        return getattr(importlib.import_module(module), name)


_TRAINING_ARGS_FILES = (("trl", "trainer/base_config.py"), ("transformers", "training_args.py"))
_TRAINING_ENUMS = (
    ("transformers", "trainer_utils.py"),
    ("transformers", "training_args.py"),
    ("transformers", "debug_utils.py"),
)

SFT_CONFIG = ClassRef("trl:SFTConfig", (("trl", "trainer/sft_config.py"),) + _TRAINING_ARGS_FILES, _TRAINING_ENUMS)
DPO_CONFIG = ClassRef("trl:DPOConfig", (("trl", "trainer/dpo_config.py"),) + _TRAINING_ARGS_FILES, _TRAINING_ENUMS)
MODEL_CONFIG = ClassRef("trl:ModelConfig", (("trl", "trainer/model_config.py"),))


@functools.lru_cache(maxsize=None)
def source_fields(ref: ClassRef) -> dict[str, FieldSpec]:
    """The init fields of the class ``ref`` names, base-class fields first and overrides applied."""
    enums = _enums(ref.enum_files) if ref.enum_files else {}
    merged: dict[str, FieldSpec] = {}
    names = [ref.name] + [None] * (len(ref.files) - 1)
    for (package, rel), cname in reversed(list(zip(ref.files, names))):
        _, specs = _class_fields(_parse(package, rel), cname, enums)
        for spec in specs:
            merged[spec.name] = spec
    return merged


@functools.lru_cache(maxsize=None)
def integration_names() -> tuple[str, ...]:
    """The ``report_to`` integrations the installed transformers knows (its INTEGRATION_TO_CALLBACK keys)."""
    for node in _parse("transformers", "integrations/integration_utils.py").body:
        if (
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "INTEGRATION_TO_CALLBACK" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return tuple(k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return ()


def _package_dir(package: str) -> str:
    spec = importlib.util.find_spec(package)  # finds a top-level package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"package '{package}' is not installed in this Python ({sys.executable}); "
            f"run the README's install command or activate its .venv"
        )
    return list(spec.submodule_search_locations)[0]


@functools.lru_cache(maxsize=None)
def _parse(package: str, relpath: str) -> ast.Module:
    path = os.path.join(_package_dir(package), relpath)
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


@functools.lru_cache(maxsize=None)
def _enums(files: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for package, rel in files:
        for node in _parse(package, rel).body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if not bases & {"ExplicitEnum", "Enum", "StrEnum"}:
                continue
            values = []
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    values.append(stmt.value.value)
            if values:
                found[node.name] = tuple(values)
    return found


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return dataclasses.MISSING
    if isinstance(node, ast.Lambda):
        node = node.body
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return COMPUTED


def _class_fields(tree: ast.Module, class_name: str | None, enums) -> tuple[str, list[FieldSpec]]:
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    cls = next((c for c in classes if c.name == class_name), None) if class_name else None
    if cls is None:  # the first dataclass in the file
        cls = next(
            c
            for c in classes
            if any(
                getattr(d, "id", "") == "dataclass" or getattr(getattr(d, "func", None), "id", "") == "dataclass"
                for d in c.decorator_list
            )
        )
    out = []
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        name = stmt.target.id
        if name.startswith("_"):
            continue
        default: Any = dataclasses.MISSING
        help_text = ""
        value = stmt.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
            kw = {k.arg: k.value for k in value.keywords}
            if "init" in kw and _literal(kw["init"]) is False:
                continue
            default = _literal(kw.get("default")) if "default" in kw else _literal(kw.get("default_factory"))
            meta = _literal(kw.get("metadata")) if "metadata" in kw else {}
            if isinstance(meta, dict):
                help_text = str(meta.get("help", ""))
        elif value is not None:
            default = _literal(value)
        out.append(FieldSpec(name, parse_annotation(stmt.annotation, enums), default, help_text))
    return cls.name, out
