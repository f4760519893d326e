#!/usr/bin/env python
"""Self-Instruct: grow a pool of new instructions (and instances) from human seed tasks with a teacher endpoint.

python scripts/run_self_instruct.py recipes/smoke/self_instruct.yaml [--teacher gpt-4] [--dry_run]
"""

import _bootstrap  # noqa: F401

from data_gen.self_instruct import SelfInstructArguments, check_self_instruct, run_self_instruct
from distill_core.cli import recipe_command
from distill_core.errors import run_cli
from distill_core.recipe import Section

main = recipe_command(
    "run_self_instruct.py",
    "Self-Instruct generation (Wang et al. 2022) from any OpenAI-compatible teacher.",
    [Section("data", SelfInstructArguments)],
    check_self_instruct,
    run=run_self_instruct,
)

if __name__ == "__main__":
    run_cli(main)
