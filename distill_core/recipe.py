"""The one config loader: a YAML recipe plus ``--key value`` overrides, validated strictly.

A recipe is a flat YAML mapping, exactly like TRL's and the alignment-handbook's: each key belongs to one
or more config sections (TRL's ``SFTConfig``/``DPOConfig``/``ModelConfig`` and our own script arguments).
Every key is checked (name, type) before anything heavy is imported; the TRL classes themselves are only
built by :meth:`Recipe.build` once validation has passed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .errors import RecipeError, first_line
from .recipe_keys import route_keys
from .schema import ClassRef, fields_of
from .structs import read_yaml


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
    text, data = read_yaml(
        path, f"recipe {path!r} not found; pass the path of a YAML file such as recipes/smoke/sft.yaml"
    )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of key: value pairs, got a {type(data).__name__}")
    overrides = parse_overrides(argv)
    schemas = {s.name: fields_of(s.cls) for s in sections}
    routed, values = route_keys(path, data, overrides, schemas)
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
