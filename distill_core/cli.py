"""The shape every recipe-driven script shares: help, load and validate the recipe, run, exit cleanly."""

from __future__ import annotations

import importlib
import os
from typing import Callable

from .errors import RecipeError
from .recipe import Recipe, Section, describe_sections, load_recipe


def recipe_command(prog: str, summary: str, sections: list[Section],
                   check: Callable[[Recipe], None] | None, run: str) -> Callable[[list[str]], int]:
    """Build a main(argv) for ``prog RECIPE.yaml [--key value ...]``. Validation precedes every heavy import.

    ``run`` is "module:function", imported only once the recipe has validated (it is where torch comes in).
    """
    usage = f"usage: {prog} RECIPE.yaml [--key value ...]\n\n{summary}\n"

    def main(argv: list[str]) -> int:
        if any(a in ("-h", "--help") for a in argv):
            print(usage + "\nEvery key may be set in the recipe or overridden on the command line." + describe_sections(sections))
            return 0
        if not argv or argv[0].startswith("--"):
            raise RecipeError(f"{prog}: missing the recipe path; usage: {prog} RECIPE.yaml [--key value ...]")
        recipe = load_recipe(argv[0], argv[1:], sections, check)
        module, _, function = run.partition(":")
        result = getattr(importlib.import_module(module), function)(recipe)
        if result is not None and os.environ.get("RANK", "0") == "0":
            print(f"done: {result}")
        return 0

    return main
