"""The shape every recipe-driven script shares: help, load and validate the recipe, run, exit cleanly."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable, NoReturn

from .errors import RecipeError, run_cli
from .placement import is_main_process
from .processes import Stopped, sigterm_stops
from .recipe import Recipe, Section, load_recipe
from .schema import COMPUTED, ClassRef, FieldSpec, fields_of

Check = Callable[[Recipe], None] | None  # a script's cross-key rules, run once every key has validated
Run = Callable[[Recipe], Any]  # what the script does with the validated recipe; its result is printed
Main = Callable[[list[str]], int]


def run_recipe_command(script: str, summary: str, sections: list[Section], check: Check, run: Run) -> NoReturn:
    """A recipe-driven script's whole entry point. ``script`` is its ``__file__``: it names it in usage and errors."""
    run_cli(recipe_command(os.path.basename(script), summary, sections, check, run=run))


def recipe_command(prog: str, summary: str, sections: list[Section], check: Check, run: Run) -> Main:
    """Build a main(argv) for ``prog RECIPE.yaml [--key value ...]``. Validation precedes every heavy import.

    ``run`` is called with the validated recipe. One that needs torch imports it inside itself, so that ``--help``
    and a recipe that does not validate never pay for the import.
    """
    usage = (
        f"usage: {prog} RECIPE.yaml [--key value ...]   (or --config RECIPE.yaml, as TRL's scripts take it)\n\n"
        f"{summary}\n"
    )

    def main(argv: list[str]) -> int:
        if any(a in ("-h", "--help") for a in argv):
            print(
                usage
                + "\nEvery key may be set in the recipe or overridden on the command line."
                + describe_sections(sections)
            )
            return 0
        path, overrides = split_recipe_argv(argv, prog)
        try:
            with sigterm_stops():  # a scheduler's SIGTERM unwinds like Ctrl-C: local servers stop, journals close
                recipe = load_recipe(path, overrides, sections, check)
                result = run(recipe)
        except Stopped as stop:
            if is_main_process():
                print(
                    f"stopped by {stop.name}: partial outputs are kept; rerun the same command to resume",
                    file=sys.stderr,
                )
            raise
        if result is not None and is_main_process():
            print(f"done: {result}")
        return 0

    return main


def split_recipe_argv(argv: list[str], prog: str) -> tuple[str, list[str]]:
    """The recipe path and the overrides: ``RECIPE.yaml --k v ...``, or TRL's ``--config RECIPE.yaml`` anywhere."""
    rest = list(argv)
    given: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] == "--config":
            if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                raise RecipeError(f"{prog}: --config needs the recipe path: --config RECIPE.yaml")
            given.append(rest[i + 1])
            del rest[i : i + 2]
        elif rest[i].startswith("--config="):
            given.append(rest[i].partition("=")[2])
            del rest[i]
        else:
            i += 1
    if rest and not rest[0].startswith("--"):
        given.insert(0, rest.pop(0))
    if len(given) > 1:
        raise RecipeError(
            f"{prog}: {len(given)} recipes given ({', '.join(given)}); pass one, as RECIPE.yaml or --config "
            "RECIPE.yaml"
        )
    if not given or not given[0]:
        raise RecipeError(f"{prog}: missing the recipe path; usage: {prog} RECIPE.yaml [--key value ...]")
    return given[0], rest


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
