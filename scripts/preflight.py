#!/usr/bin/env python
"""Per-GPU memory plan of a training recipe before launch: fits, tight, or does not fit (and what to change).

    python scripts/preflight.py RECIPE.yaml --accelerate_config CFG --gpu_memory_gb 80 \\
        [--nodes 1] [--gpus_per_node 8] [--stage sft|dpo] [--key value ...]

Reads the recipe with the training scripts' loader and checks (overrides included), the model's config.json only
(pass --model_name_or_path DIR when the recipe names a hub model that is not in the local cache), the accelerate
config and the DeepSpeed config it points to. No weights are loaded and torch is not imported.
--nodes and --gpus_per_node default to the accelerate config's num_machines and num_processes / num_machines;
--stage defaults to what the recipe's keys say (beta, ref_mode, loss_type... mean dpo).

Exit status: 0 when the plan fits or is tight (tight is a warning on stderr); 2 with one error line when it does
not fit or an argument is wrong. training/memory_plan/__init__.py documents how every line of the plan is computed.
"""

import sys

import _bootstrap  # noqa: F401

from distill_core.errors import RecipeError, run_cli

OPTIONS = {
    "--accelerate_config": str,
    "--gpu_memory_gb": float,
    "--nodes": int,
    "--gpus_per_node": int,
    "--stage": str,
}
NAMES = {"float": "a number of GB, e.g. 80", "int": "a whole number >= 1", "str": "a value"}


def split_options(argv: list[str]) -> tuple[dict, list[str]]:
    """This script's own options out of argv; the rest are the recipe's --key value overrides."""
    options, rest = {}, []
    i = 0
    while i < len(argv):
        name, eq, raw = argv[i].partition("=")
        name = "--" + name[2:].replace("-", "_") if name.startswith("--") else name
        if name not in OPTIONS:
            rest.append(argv[i])
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise RecipeError(f"{name} needs a value ({NAMES[OPTIONS[name].__name__]})")
            raw = argv[i + 1]
            i += 1
        try:
            value = OPTIONS[name](raw)
        except ValueError:
            raise RecipeError(f"{name} expects {NAMES[OPTIONS[name].__name__]}, got {raw!r}") from None
        if OPTIONS[name] in (int, float) and not value > 0:
            raise RecipeError(f"{name} must be greater than 0, got {raw!r}")
        options[name[2:]] = value
        i += 1
    return options, rest


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    options, rest = split_options(argv[1:])
    for required in ("accelerate_config", "gpu_memory_gb"):
        if required not in options:
            raise RecipeError(
                f"preflight.py: --{required} is required; usage: python scripts/preflight.py RECIPE.yaml "
                f"--accelerate_config recipes/accelerate/zero3.yaml --gpu_memory_gb 80 [--nodes N] "
                f"[--gpus_per_node G]"
            )
    from training.memory_plan import preflight, render

    plan = preflight(
        argv[0],
        rest,
        accelerate_config=options["accelerate_config"],
        gpu_memory_gb=options["gpu_memory_gb"],
        nodes=options.get("nodes"),
        gpus_per_node=options.get("gpus_per_node"),
        stage=options.get("stage"),
    )
    print(render(plan), flush=True)
    if plan.verdict == "tight":
        print(f"warning: tight: {plan.summary()}", file=sys.stderr)
    elif not plan.fits:
        raise RecipeError(plan.summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
