#!/usr/bin/env python
"""Judge a completion pool on four aspects and binarize the ratings into (prompt, chosen, rejected) pairs.

python scripts/run_judge.py recipes/smoke/judge.yaml [--judge gpt-4] [--mode logprobs] [--strategy random_rest]
"""

import _bootstrap  # noqa: F401

from data_gen.judge import JudgeArguments, check_judge, run_judge
from distill_core.cli import run_recipe_command
from distill_core.recipe import Section

SUMMARY = "UltraFeedback-style judging (text or logprob mode) and binarization for DPO."
SECTIONS = [Section("data", JudgeArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_judge, run_judge)
