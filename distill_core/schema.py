"""Field schemas of config dataclasses, read without importing them.

TRL's config classes inherit from ``transformers.TrainingArguments``; importing them pulls in torch,
peft and bitsandbytes (about 5 s). Recipes must be validated (and ``--help`` answered) before any of
that, so the field names, types, defaults and help texts are read from the installed packages' source
with :mod:`ast`. The schema therefore always matches the installed TRL and transformers versions.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import UserError

# ---------------------------------------------------------------------------------------------------------------------
# Types


@dataclass(frozen=True)
class TypeSpec:
    """A small model of an annotation: kind is one of any, none, bool, int, float, str, list, dict, union, choice."""

    kind: str
    args: tuple = ()

    def describe(self) -> str:
        if self.kind == "list":
            return f"list[{self.args[0].describe()}]" if self.args else "list"
        if self.kind == "union":
            return " | ".join(a.describe() for a in self.args)
        if self.kind == "choice":
            return "one of " + ", ".join(repr(v) for v in self.args)
        return self.kind


ANY = TypeSpec("any")


def parse_annotation(node: ast.expr | str, enums: dict[str, tuple[str, ...]]) -> TypeSpec:
    """Turn an annotation (AST or source string) into a TypeSpec. Unknown names are treated as free-form."""
    if isinstance(node, str):
        node = ast.parse(node, mode="eval").body
    if isinstance(node, ast.Constant):
        if node.value is None:
            return TypeSpec("none")
        if isinstance(node.value, str):  # a forward reference
            return parse_annotation(node.value, enums)
        return ANY
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([parse_annotation(node.left, enums), parse_annotation(node.right, enums)])
    if isinstance(node, ast.Name) or isinstance(node, ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        if name in ("Any", "object"):
            return ANY
        if name == "None":
            return TypeSpec("none")
        if name in ("bool", "int", "float", "str"):
            return TypeSpec(name)
        if name in ("dict", "Dict"):
            return TypeSpec("dict")
        if name in ("list", "List", "tuple", "Tuple"):
            return TypeSpec("list")
        if name in enums:
            return TypeSpec("choice", enums[name])
        return ANY
    if isinstance(node, ast.Subscript):
        base = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        inner = node.slice
        items = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        if base == "Optional":
            return _union([parse_annotation(items[0], enums), TypeSpec("none")])
        if base == "Union":
            return _union([parse_annotation(i, enums) for i in items])
        if base in ("list", "List", "Sequence", "tuple", "Tuple"):
            return TypeSpec("list", (parse_annotation(items[0], enums),))
        if base in ("dict", "Dict", "Mapping"):
            return TypeSpec("dict")
        if base == "Literal":
            return TypeSpec("choice", tuple(ast.literal_eval(i) for i in items))
    return ANY


def _union(members: list[TypeSpec]) -> TypeSpec:
    flat: list[TypeSpec] = []
    for m in members:
        for sub in m.args if m.kind == "union" else (m,):
            if sub not in flat:
                flat.append(sub)
    if any(m.kind == "any" for m in flat):
        return ANY
    if any(m.kind == "choice" for m in flat):
        # transformers annotates enum fields as `Enum | str`; the string must still name a member
        flat = [m for m in flat if m.kind != "str"]
    return flat[0] if len(flat) == 1 else TypeSpec("union", tuple(flat))


class TypeMismatch(ValueError):
    pass


_UNION_ORDER = {kind: i for i, kind in enumerate(["none", "bool", "int", "float", "choice", "list", "dict", "str"])}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, spec: TypeSpec) -> Any:
    """Return value converted to spec, or raise TypeMismatch. Values arrive already parsed by YAML."""
    kind = spec.kind
    if kind == "any":
        return value
    if kind == "none":
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        raise TypeMismatch
    if kind == "union":
        # a float member must not swallow an int, nor str swallow everything: try the strict kinds first
        for member in sorted(spec.args, key=lambda m: _UNION_ORDER.get(m.kind, len(_UNION_ORDER))):
            try:
                return coerce(value, member)
            except TypeMismatch:
                continue
        raise TypeMismatch
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise TypeMismatch
    if kind == "int":
        if isinstance(value, bool):
            raise TypeMismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise TypeMismatch from None
        raise TypeMismatch
    if kind == "float":
        if isinstance(value, bool):
            raise TypeMismatch
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str):  # YAML 1.1 reads 5e-7 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise TypeMismatch from None
        raise TypeMismatch
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeMismatch
    if kind == "choice":
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes as a boolean
            value = {False: "no", True: "yes"}[value]
        if value in spec.args:
            return value
        raise TypeMismatch
    if kind == "list":
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, dict):
            raise TypeMismatch
        inner = spec.args[0] if spec.args else ANY
        return [coerce(v, inner) for v in items]
    if kind == "dict":
        if isinstance(value, dict):
            return value
        raise TypeMismatch
    raise TypeMismatch


# ---------------------------------------------------------------------------------------------------------------------
# Fields


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


def fields_of(cls: ClassRef | type) -> dict[str, FieldSpec]:
    """Every init field of a config class, by name, base-class fields first and overrides applied."""
    if isinstance(cls, type):
        return _fields_of_dataclass(cls)
    return _fields_of_ref(cls)


@functools.lru_cache(maxsize=None)
def _fields_of_ref(ref: ClassRef) -> dict[str, FieldSpec]:
    enums = _enums(ref.enum_files) if ref.enum_files else {}
    merged: dict[str, FieldSpec] = {}
    names = [ref.name] + [None] * (len(ref.files) - 1)
    for (package, rel), cname in reversed(list(zip(ref.files, names))):
        _, specs = _class_fields(_parse(package, rel), cname, enums)
        for spec in specs:
            merged[spec.name] = spec
    return merged


@functools.lru_cache(maxsize=None)
def _fields_of_dataclass(cls: type) -> dict[str, FieldSpec]:
    hints, modules = {}, {}
    for klass in reversed(cls.__mro__):
        annotations = klass.__dict__.get("__annotations__", {})
        hints.update(annotations)
        modules.update(dict.fromkeys(annotations, klass.__module__))
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        ann = hints.get(f.name, f.type)
        spec = (
            parse_annotation(ann, _literal_aliases(modules.get(f.name, cls.__module__)))
            if isinstance(ann, str)
            else _spec_from_runtime(ann)
        )
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out[f.name] = FieldSpec(
            f.name,
            spec,
            default,
            f.metadata.get("help", ""),
            bounds_from_metadata(f.metadata),
            f.metadata.get("fix", ""),
        )
    return out


def _literal_aliases(module_name: str) -> dict[str, tuple]:
    """The ``Name = Literal[...]`` aliases a module can see, by name: under ``from __future__ import annotations`` a
    field annotated with such an alias arrives as the bare name, which parse_annotation resolves like an enum."""
    module = sys.modules.get(module_name)
    return (
        {
            name: typing.get_args(value)
            for name, value in vars(module).items()
            if typing.get_origin(value) is typing.Literal
        }
        if module
        else {}
    )


def _spec_from_runtime(tp: Any) -> TypeSpec:
    if tp is type(None):
        return TypeSpec("none")
    if tp in (bool, int, float, str):
        return TypeSpec(tp.__name__)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return TypeSpec("choice", typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return TypeSpec("list", (_spec_from_runtime(args[0]),) if args else ())
    if origin is dict or tp is dict:
        return TypeSpec("dict")
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return _union([_spec_from_runtime(a) for a in typing.get_args(tp)])
    return ANY
