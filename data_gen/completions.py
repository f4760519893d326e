"""The completion pool: several models answer each prompt, each under a sampled "principle" system prompt.

As in UltraFeedback: N completions per prompt (default 4), each from a model drawn from a pool of endpoints
(distinct models while the pool is large enough), each generated under one of four principles
(helpfulness, truthfulness, honesty, verbalized calibration) drawn from a configurable mix. Every completion
records its model, principle and finish_reason. Output rows: ``prompt``, ``prompt_id``, ``completions``.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from distill_core.errors import DataError, RecipeError
from distill_core.recipe import Recipe

from .client import ChatRequest
from .endpoints import load_teacher
from .session import GenerationSession
from .stage.arguments import GenerationArguments, check_generation
from .stage.estimates import estimate_cost
from .stage.ids import derived_seed, prompt_id, templates_hash
from .stage.inputs import dedupe_prompts, load_prompts, refuse_duplicates
from .stage.record import StageOutputs, local_model_name, write_stage_outputs
from .stage.running import estimate_or_run, generate

logger = logging.getLogger(__name__)

# Our own wording of the four principles' system prompts.
PRINCIPLES = {
    "helpfulness": "You are a helpful assistant. Give an answer that is accurate, relevant and as useful as possible "
    "to the person asking, with the detail the question calls for.",
    "truthfulness": "You are a truthful assistant. Say only what you believe to be true; do not invent facts, sources "
    "or numbers, and correct a false premise in the question instead of going along with it.",
    "honesty": "You are an honest assistant. Answer as well as you can, and say plainly when you do not know or "
    "when the question cannot be answered with confidence.",
    "verbalized_calibration": "You are an assistant that states its confidence. Answer the question, then end with "
    "a line 'Confidence: NN%' giving how likely your answer is to be correct.",
}


@dataclass
class CompletionArguments(GenerationArguments):
    prompts: str = field(
        default="",
        metadata={
            "help": (
                "Prompt dataset: a JSONL file or a directory with train.jsonl; rows with 'prompt' (string) or "
                "'messages'."
            )
        },
    )
    models: list = field(
        default_factory=lambda: ["local"],
        metadata={"help": "The model pool: teacher overlays (names, paths or inline mappings), one per model."},
    )
    completions_per_prompt: int = field(
        default=4,
        metadata={
            "help": "Completions per prompt (4 in UltraFeedback).",
            "min": 2,
            "fix": "a preference pair needs at least 2 completions per prompt",
        },
    )
    principles: dict = field(
        default_factory=lambda: {name: 1.0 for name in PRINCIPLES},
        metadata={
            "help": "Mix of principles: name -> weight (helpfulness, truthfulness, honesty, verbalized_calibration)."
        },
    )
    num_prompts: Optional[int] = field(
        default=None,
        metadata={"help": "Use only the first N prompts.", "min": 1, "fix": "omit the key to use every prompt"},
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of every model.", "min": 0})
    top_p: float = field(default=1.0, metadata={"help": "Sampling top_p.", "exclusive_min": 0, "max": 1})
    max_tokens: int = field(default=512, metadata={"help": "max_tokens per completion.", "min": 1})

    def check(self, where: str) -> None:
        """Rules a key's type and bounds cannot state (the recipe loader checks those before this)."""
        if not os.path.exists(self.prompts):
            raise DataError(f"{where}: prompts '{self.prompts}' does not exist; generate or point at a prompt dataset")
        if not self.models:
            raise RecipeError(
                f"{where}: models is empty; list at least one teacher (a name under recipes/teachers/, "
                f"a path or an inline mapping)"
            )
        # the same model twice in the pool would answer one prompt twice and leave the judge nothing to tell apart
        refuse_duplicates(self.models, where, "models")
        unknown = sorted(set(self.principles) - set(PRINCIPLES))
        if unknown:
            raise RecipeError(f"{where}: unknown principle '{unknown[0]}'; choose from {sorted(PRINCIPLES)}")
        weights = self.principles.values()
        if any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
            raise RecipeError(f"{where}: principles weights must be non-negative numbers with a positive sum")


def check_completions(recipe: Recipe) -> None:
    where = recipe.path
    args: CompletionArguments = check_generation(recipe, "prompts")
    recipe.parsed["models"] = [load_teacher(m, f"{where}: models[{i}]") for i, m in enumerate(args.models)]


def plan(prompts: list[str], n_models: int, args: CompletionArguments) -> list[list[tuple[int, str]]]:
    """(model index, principle) for every completion of every prompt; seeded per prompt, so order-independent."""
    names = list(args.principles)
    weights = [args.principles[n] for n in names]
    out = []
    for text in prompts:
        rng = random.Random(derived_seed(args.seed, "pool", prompt_id(text)))
        if n_models >= args.completions_per_prompt:
            models = rng.sample(range(n_models), args.completions_per_prompt)
        else:
            models = [rng.randrange(n_models) for _ in range(args.completions_per_prompt)]
        out.append([(m, rng.choices(names, weights)[0]) for m in models])
    return out


def run_completions(recipe: Recipe) -> str:
    args: CompletionArguments = recipe.build("data")
    models = recipe.parsed["models"]
    prompts = dedupe_prompts(load_prompts(args.prompts), args.prompts)[: args.num_prompts]
    assignments = plan(prompts, len(models), args)
    sampling = {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    roles = {f"model{i}": m for i, m in enumerate(models)}
    return estimate_or_run(
        args,
        lambda: _estimate(models, assignments, args),
        lambda: _run_completions(recipe, args, prompts, assignments, sampling, roles),
    )


def _estimate(models: list, assignments: list[list[tuple[int, str]]], args: CompletionArguments) -> list[dict]:
    rows = []
    for i, m in enumerate(models):
        n = sum(1 for a in assignments for mi, _ in a if mi == i)
        rows.append({"role": f"model{i}", **estimate_cost(m, n, n * 200, n * args.max_tokens)})
    return rows


def _run_completions(
    recipe: Recipe,
    args: CompletionArguments,
    prompts: list[str],
    assignments: list[list[tuple[int, str]]],
    sampling: dict,
    roles: dict,
) -> str:
    batches, slots = _requests_per_role(prompts, assignments, sampling, roles, args.seed)
    pool: list[list[dict | None]] = [[None] * args.completions_per_prompt for _ in prompts]

    def answer(gen: GenerationSession) -> None:
        results = gen.ask_many(batches, "completions")
        for role, role_results in results.items():
            model_name = local_model_name(roles[role]) or gen.clients[role].model_id  # no path of this machine
            for (p, slot), result in zip(slots[role], role_results):
                if result.kept(args.keep_truncated):
                    pool[p][slot] = {
                        "model": model_name,
                        "text": result.text,
                        "principle": assignments[p][slot][1],
                        "finish_reason": result.finish_reason,
                    }

    stats, failures = generate(args, roles, answer)
    if stats["stopped_by_budget"]:
        logger.warning("max_cost_usd reached: writing the completions done so far")
    rows = _pool_rows(prompts, pool)
    per_model = Counter(c["model"] for row in rows for c in row["completions"])
    write_stage_outputs(
        StageOutputs(
            args.output_dir,
            "completions",
            recipe,
            {"pool": rows},
            roles=roles,
            sampling=sampling,
            templates=templates_hash(*PRINCIPLES.values()),
            stats=stats,
            counts={
                "prompts": len(prompts),
                "rows": len(rows),
                "completions": sum(per_model.values()),
                "per_model": dict(per_model),
            },
            card_lines=[f"- completions per model: {dict(per_model)}", f"- principle mix: {args.principles}"],
            failures=failures,
        )
    )
    return args.output_dir


def _requests_per_role(
    prompts: list[str], assignments: list[list[tuple[int, str]]], sampling: dict, roles: dict, seed: int
) -> tuple[dict[str, list[ChatRequest]], dict[str, list[tuple[int, int]]]]:
    """Each role's requests, and for each the (prompt index, slot) its completion fills."""
    batches: dict[str, list[ChatRequest]] = {role: [] for role in roles}
    slots: dict[str, list[tuple[int, int]]] = {role: [] for role in roles}
    for p, (text, assigned) in enumerate(zip(prompts, assignments)):
        for slot, (model_index, principle) in enumerate(assigned):
            role = f"model{model_index}"
            messages = [{"role": "system", "content": PRINCIPLES[principle]}, {"role": "user", "content": text}]
            batches[role].append(ChatRequest(messages, {**sampling, "seed": derived_seed(seed, p, slot)}, sample=slot))
            slots[role].append((p, slot))
    return batches, slots


def _pool_rows(prompts: list[str], pool: list[list[dict | None]]) -> list[dict]:
    """One row per prompt with at least two completions: a preference pair needs two."""
    rows = []
    for text, completions in zip(prompts, pool):
        done = [c for c in completions if c is not None]
        if len(done) >= 2:
            rows.append({"prompt_id": prompt_id(text), "prompt": text, "completions": done, "source": "completions"})
    return rows
