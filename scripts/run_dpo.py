#!/usr/bin/env python
"""dDPO: direct preference optimisation of the dSFT model against a frozen reference.

accelerate launch --config_file recipes/accelerate/zero3.yaml scripts/run_dpo.py recipes/zephyr-7b-beta/dpo.yaml
python scripts/run_dpo.py recipes/smoke/dpo.yaml --ref_mode precomputed
"""

import _bootstrap  # noqa: F401

from distill_core.cli import run_recipe_command
from training.arguments import DPO_SECTIONS, check_dpo

SUMMARY = "Preference optimisation with TRL's DPOTrainer (ref_mode: model | precomputed | adapter)."


def run(recipe):
    from training.dpo import train_dpo  # torch comes in here, once the recipe has validated

    return train_dpo(recipe)


if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, DPO_SECTIONS, check_dpo, run)
