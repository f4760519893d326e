#!/usr/bin/env python
"""Remove training rows that hold benchmark text (n-gram overlap), and report what was found per benchmark.

python scripts/run_decontaminate.py recipes/smoke/decontaminate.yaml [--ngram_size 8] [--rule coverage --threshold 0.5]
"""

import _bootstrap  # noqa: F401

from decontamination.arguments import DecontaminateArguments, check_decontaminate
from decontamination.stage import run_decontaminate
from distill_core.cli import run_recipe_command
from distill_core.recipe import Section

SUMMARY = "N-gram decontamination: the clean dataset, the removed rows with their matches, a report per benchmark."
SECTIONS = [Section("data", DecontaminateArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_decontaminate, run_decontaminate)
