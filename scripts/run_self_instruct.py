#!/usr/bin/env python
"""Self-Instruct: grow a pool of new instructions (and instances) from human seed tasks with a teacher endpoint.

python scripts/run_self_instruct.py recipes/smoke/self_instruct.yaml [--teacher gpt-4] [--dry_run]
"""

import _bootstrap  # noqa: F401

from data_gen.self_instruct import SelfInstructArguments, check_self_instruct, run_self_instruct
from distill_core.cli import run_recipe_command
from distill_core.recipe import Section

SUMMARY = "Self-Instruct generation (Wang et al. 2022) from any OpenAI-compatible teacher."
SECTIONS = [Section("data", SelfInstructArguments)]

if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_self_instruct, run_self_instruct)
