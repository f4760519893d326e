#!/usr/bin/env python
"""UltraChat-style multi-turn dialogues between a user-simulator endpoint and an assistant endpoint.

python scripts/run_dialogues.py recipes/smoke/dialogues.yaml [--teacher vllm] [--dry_run]
"""

import _bootstrap  # noqa: F401

from data_gen.dialogues import DialogueArguments, check_dialogues, run_dialogues
from distill_core.cli import run_recipe_command
from distill_core.recipe import Section

SUMMARY = "Multi-turn dialogue generation for dSFT (user simulator + assistant roles)."
SECTIONS = [Section("data", DialogueArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_dialogues, run_dialogues)
