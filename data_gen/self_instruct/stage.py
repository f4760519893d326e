"""run_self_instruct: from the seed tasks to the prompt, SFT and instruction datasets and their run record."""

from __future__ import annotations

import json
import logging
import math
import random

from distill_core.errors import DataError
from distill_core.jsonl import read_jsonl
from distill_core.recipe import Recipe

from ..client import estimate_tokens
from ..stage.estimates import estimate_cost
from ..stage.ids import templates_hash
from ..stage.inputs import first_of_each
from ..stage.record import StageOutputs, write_stage_outputs
from ..stage.running import estimate_or_run, generate
from .arguments import SelfInstructArguments
from .instances import add_instances
from .pool import InstructionPool, grow
from .templates import TEMPLATES, generation_prompt

logger = logging.getLogger(__name__)


def run_self_instruct(recipe: Recipe) -> str:
    args: SelfInstructArguments = recipe.build("data")
    teacher = recipe.parsed["teacher"]
    # a repeated seed would be shown twice as often in the generation prompts and skew what the teacher imitates
    seeds = first_of_each(
        load_seed_tasks(args.seed_tasks),
        lambda task: task["instruction"].strip(),
        args.seed_tasks,
        "seed task",
        "seeds",
    )
    return estimate_or_run(
        args, lambda: _estimate(args, teacher, seeds), lambda: _run_self_instruct(recipe, args, teacher, seeds)
    )


def _run_self_instruct(recipe: Recipe, args: SelfInstructArguments, teacher, seeds: list[dict]) -> str:
    sampling = {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    pool = InstructionPool.from_seeds(seeds, args.rouge_threshold)

    def work(gen) -> None:
        grow(gen, pool, seeds, args, sampling)
        if args.generate_instances and pool.accepted:
            add_instances(gen, pool.accepted, args)

    stats, failures = generate(args, {"teacher": teacher}, work)
    if stats["stopped_by_budget"]:
        logger.warning(
            "max_cost_usd %.4f reached: writing what is done; rerun with a higher budget to continue",
            args.max_cost_usd,
        )
    accepted, rejected = pool.accepted, json.dumps(pool.rejected, sort_keys=True)
    prompts = [{"prompt": a["instruction"], "source": "self-instruct"} for a in accepted]
    sft = _sft_rows(accepted)
    counts = {
        "seed_tasks": len(seeds),
        "rounds": pool.rounds,
        "accepted": len(accepted),
        "rejected": pool.rejected,
        "with_instances": len(sft),
    }
    write_stage_outputs(
        StageOutputs(
            args.output_dir,
            "self_instruct",
            recipe,
            {"prompts": prompts, "sft": sft, "instructions": accepted},
            roles={"teacher": teacher},
            sampling=sampling,
            templates=templates_hash(*TEMPLATES),
            stats=stats,
            counts=counts,
            card_lines=[f"- accepted {len(accepted)} instructions in {pool.rounds} rounds; rejected: {rejected}"],
            failures=failures,
            detail=f"every new instruction was rejected: {rejected}",
        )
    )
    logger.info("self-instruct: %d instructions, %d SFT examples, $%.4f", len(accepted), len(sft), stats["cost_usd"])
    return args.output_dir


def _sft_rows(accepted: list[dict]) -> list[dict]:
    """One user/assistant exchange per instruction that got an instance."""
    return [
        {
            "messages": [{"role": "user", "content": _user_turn(a)}, {"role": "assistant", "content": a["output"]}],
            "source": "self-instruct",
        }
        for a in accepted
        if a.get("output")
    ]


def load_seed_tasks(path: str) -> list[dict]:
    tasks = []
    for n, row in read_jsonl(path):
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise DataError(f"{path} line {n}: a seed task needs a non-empty 'instruction' string")
        tasks.append(row)
    if not tasks:
        raise DataError(f"{path}: no seed tasks found")
    return tasks


def _user_turn(entry: dict) -> str:
    return entry["instruction"] + (f"\n\n{entry['input']}" if entry.get("input") else "")


def _estimate(args: SelfInstructArguments, teacher, seeds: list[dict]) -> list[dict]:
    rng = random.Random(args.seed)
    prompt_tokens = estimate_tokens([{"role": "user", "content": generation_prompt(rng, seeds, [], args)}])
    # assume half of the parsed tasks survive the filters (the paper kept about 50-60% at first, less later)
    gen_requests = math.ceil(args.num_instructions / (args.instructions_per_request * 0.5))
    rows = [
        {
            "role": "generation",
            **estimate_cost(teacher, gen_requests, gen_requests * prompt_tokens, gen_requests * args.max_tokens),
        }
    ]
    if args.generate_instances:
        n = args.num_instructions
        rows.append({"role": "classification", **estimate_cost(teacher, n, n * 80, n * 8)})
        rows.append({"role": "instances", **estimate_cost(teacher, n, n * 90, n * args.instance_max_tokens)})
    return rows
