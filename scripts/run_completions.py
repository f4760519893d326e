#!/usr/bin/env python
"""Completion pool: several models answer each prompt, each under a sampled principle system prompt.

python scripts/run_completions.py recipes/smoke/completions.yaml [--models "[gpt-4, vllm]"] [--dry_run true]
"""

import _bootstrap  # noqa: F401

from data_gen.completions import CompletionArguments, check_completions, run_completions
from distill_core.cli import run_recipe_command
from distill_core.recipe import Section

SUMMARY = "UltraFeedback-style completion pool from a pool of OpenAI-compatible models."
SECTIONS = [Section("data", CompletionArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_completions, run_completions)
