"""A small model of field annotations, and the strict conversion of YAML values to it."""

from __future__ import annotations

import ast
import typing
from dataclasses import dataclass
from typing import Any


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


def spec_from_runtime(tp: Any) -> TypeSpec:
    """The TypeSpec of an annotation that is already a type object (a dataclass defined without string annotations)."""
    if tp is type(None):
        return TypeSpec("none")
    if tp in (bool, int, float, str):
        return TypeSpec(tp.__name__)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return TypeSpec("choice", typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return TypeSpec("list", (spec_from_runtime(args[0]),) if args else ())
    if origin is dict or tp is dict:
        return TypeSpec("dict")
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return _union([spec_from_runtime(a) for a in typing.get_args(tp)])
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


def coerce(value: Any, spec: TypeSpec) -> Any:
    """Return value converted to spec, or raise TypeMismatch. Values arrive already parsed by YAML."""
    return _COERCE_BY_KIND.get(spec.kind, _refuse)(value, spec)


_UNION_ORDER = {kind: i for i, kind in enumerate(["none", "bool", "int", "float", "choice", "list", "dict", "str"])}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _refuse(value: Any, spec: TypeSpec) -> Any:
    raise TypeMismatch


def _as_any(value: Any, spec: TypeSpec) -> Any:
    return value


def _as_none(value: Any, spec: TypeSpec) -> None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        return None
    raise TypeMismatch


def _as_union(value: Any, spec: TypeSpec) -> Any:
    # a float member must not swallow an int, nor str swallow everything: try the strict kinds first
    for member in sorted(spec.args, key=lambda m: _UNION_ORDER.get(m.kind, len(_UNION_ORDER))):
        try:
            return coerce(value, member)
        except TypeMismatch:
            continue
    raise TypeMismatch


def _as_bool(value: Any, spec: TypeSpec) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise TypeMismatch


def _as_int(value: Any, spec: TypeSpec) -> int:
    if isinstance(value, bool):
        raise TypeMismatch
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _number_from_text(value, int)


def _as_float(value: Any, spec: TypeSpec) -> int | float:
    if isinstance(value, bool):
        raise TypeMismatch
    if isinstance(value, (int, float)):
        return value
    return _number_from_text(value, float)  # YAML 1.1 reads 5e-7 (no dot) as a string


def _number_from_text(value: Any, number: type[int] | type[float]) -> int | float:
    if not isinstance(value, str):
        raise TypeMismatch
    try:
        return number(value)
    except ValueError:
        raise TypeMismatch from None


def _as_str(value: Any, spec: TypeSpec) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeMismatch


def _as_choice(value: Any, spec: TypeSpec) -> Any:
    if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes as a boolean
        value = {False: "no", True: "yes"}[value]
    if value in spec.args:
        return value
    raise TypeMismatch


def _as_list(value: Any, spec: TypeSpec) -> list:
    if isinstance(value, dict):
        raise TypeMismatch
    items = value if isinstance(value, (list, tuple)) else [value]
    inner = spec.args[0] if spec.args else ANY
    return [coerce(v, inner) for v in items]


def _as_dict(value: Any, spec: TypeSpec) -> dict:
    if isinstance(value, dict):
        return value
    raise TypeMismatch


_COERCE_BY_KIND = {
    "any": _as_any,
    "none": _as_none,
    "union": _as_union,
    "bool": _as_bool,
    "int": _as_int,
    "float": _as_float,
    "str": _as_str,
    "choice": _as_choice,
    "list": _as_list,
    "dict": _as_dict,
}
