#!/usr/bin/env python
"""dSFT: supervised fine-tuning on (teacher) dialogues.

accelerate launch --config_file recipes/accelerate/zero3.yaml scripts/run_sft.py recipes/zephyr-7b-beta/sft.yaml
python scripts/run_sft.py recipes/smoke/sft.yaml --max_steps 5
"""

import _bootstrap  # noqa: F401

from distill_core.cli import recipe_command
from distill_core.errors import run_cli
from training.arguments import SFT_SECTIONS, check_sft


def run(recipe):
    from training.sft import train_sft  # torch comes in here, once the recipe has validated

    return train_sft(recipe)


main = recipe_command(
    "run_sft.py",
    "Supervised fine-tuning (full, LoRA or QLoRA) with TRL's SFTTrainer.",
    SFT_SECTIONS,
    check_sft,
    run=run,
)

if __name__ == "__main__":
    run_cli(main)
