#!/usr/bin/env python
"""Evaluate models on MT-Bench: answers from each model (served locally, at an endpoint, or read from a file),
judged single-answer (1-10 per turn) and/or pairwise in both orders, scored per turn and category, and ranked.

python scripts/run_eval.py recipes/smoke/eval.yaml [--judge gpt-4] [--grading both] [--questions_per_category 2]
"""

import _bootstrap  # noqa: F401

from distill_core.cli import run_recipe_command
from distill_core.recipe import Section
from evaluation.arguments import EvalArguments, check_eval
from evaluation.stage import run_eval

SUMMARY = "MT-Bench evaluation: answers, single and pairwise judging, scores, Bradley-Terry ranking."
SECTIONS = [Section("data", EvalArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_eval, run_eval)
