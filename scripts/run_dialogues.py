#!/usr/bin/env python
"""UltraChat-style multi-turn dialogues between a user-simulator endpoint and an assistant endpoint.

python scripts/run_dialogues.py recipes/smoke/dialogues.yaml [--teacher vllm] [--dry_run]
"""

import _bootstrap  # noqa: F401

from data_gen.dialogues import DialogueArguments, check_dialogues, run_dialogues
from distill_core.cli import recipe_command
from distill_core.errors import run_cli
from distill_core.recipe import Section

main = recipe_command(
    "run_dialogues.py",
    "Multi-turn dialogue generation for dSFT (user simulator + assistant roles).",
    [Section("data", DialogueArguments)],
    check_dialogues,
    run=run_dialogues,
)

if __name__ == "__main__":
    run_cli(main)
