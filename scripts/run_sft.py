#!/usr/bin/env python
"""dSFT: supervised fine-tuning on (teacher) dialogues.

accelerate launch --config_file recipes/accelerate/zero3.yaml scripts/run_sft.py recipes/zephyr-7b-beta/sft.yaml
python scripts/run_sft.py recipes/smoke/sft.yaml --max_steps 5
"""

import _bootstrap  # noqa: F401

from distill_core.cli import run_recipe_command
from training.arguments import SFT_SECTIONS, check_sft

SUMMARY = "Supervised fine-tuning (full, LoRA or QLoRA) with TRL's SFTTrainer."


def run(recipe):
    from training.sft import train_sft  # torch comes in here, once the recipe has validated

    return train_sft(recipe)


if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SFT_SECTIONS, check_sft, run)
