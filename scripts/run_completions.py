#!/usr/bin/env python
"""Completion pool: several models answer each prompt, each under a sampled principle system prompt.

python scripts/run_completions.py recipes/smoke/completions.yaml [--models "[gpt-4, vllm]"] [--dry_run true]
"""

import _bootstrap  # noqa: F401

from data_gen.completions import CompletionArguments, check_completions, run_completions
from distill_core.cli import recipe_command
from distill_core.errors import run_cli
from distill_core.recipe import Section

main = recipe_command(
    "run_completions.py",
    "UltraFeedback-style completion pool from a pool of OpenAI-compatible models.",
    [Section("data", CompletionArguments)],
    check_completions,
    run=run_completions,
)

if __name__ == "__main__":
    run_cli(main)
