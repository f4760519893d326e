"""The judge stage's recipe: its keys with their defaults, choices and bounds, and the rules that tie keys together."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.errors import DataError, RecipeError
from distill_core.recipe import Recipe

from ..endpoints import load_teacher
from ..rating_vocabulary import ALL_ASPECTS, Aspect, JudgeMode, Score, Strategy
from ..stage import GenerationArguments, check_generation, refuse_duplicates
from .templates import judge_templates


@dataclass
class JudgeArguments(GenerationArguments):
    """The judge's keys, beside those every generation stage has. Of those, ``keep_truncated`` decides whether a text
    reply cut by max_tokens is read as a verdict; off, it is re-asked like any unusable reply (logprob modes ask for
    one token and read its probabilities, so it does not apply to them)."""

    pool: str = field(
        default="",
        metadata={
            "help": "Completion pool: a JSONL file or directory with train.jsonl (prompt, prompt_id, completions)."
        },
    )
    judge: Any = field(
        default="local",
        metadata={"help": "The judge: a teacher overlay name, path or inline mapping (gpt-4, local, ...)."},
    )
    mode: JudgeMode = field(
        default="text",
        metadata={
            "help": (
                "text: one JSON-rated call per aspect; logprobs: expected rating from an endpoint's top "
                "logprobs; logprobs_local: the same from a local model run in-process."
            )
        },
    )
    judge_model_dir: Optional[str] = field(default=None, metadata={"help": "Model directory for mode logprobs_local."})
    aspects: list[Aspect] = field(
        default_factory=lambda: list(ALL_ASPECTS),
        metadata={"help": "Aspects to rate, each once.", "fix": "spell each aspect as one of the names listed"},
    )
    max_reasks: int = field(
        default=3, metadata={"help": "Re-asks after an unusable reply (the original used up to 10).", "min": 0}
    )
    json_mode: bool = field(
        default=False, metadata={"help": "Ask for response_format json_object (for endpoints that support it)."}
    )
    temperature: float = field(default=0.0, metadata={"help": "Judge temperature (0 in UltraFeedback).", "min": 0})
    max_tokens: int = field(default=1024, metadata={"help": "max_tokens of a text-mode judge reply.", "min": 1})
    num_prompts: Optional[int] = field(
        default=None,
        metadata={"help": "Judge only the first N prompts.", "min": 1, "fix": "omit the key to judge every prompt"},
    )
    critique: bool = field(
        default=False,
        metadata={
            "help": (
                "Also run a critique pass giving each completion an overall score 1-10 (needed for score: overall)."
            )
        },
    )
    score: Score = field(default="mean", metadata={"help": "Binarization score: mean (of aspect ratings) or overall."})
    strategy: Strategy = field(
        default="random_lower",
        metadata={"help": "Rejected pick: random_lower (default), random_rest (Zephyr's original) or lowest."},
    )
    min_margin: float = field(default=0.0, metadata={"help": "Drop pairs whose score margin is below this.", "min": 0})

    def check(self, where: str) -> None:
        """Rules a key's type, choices and bounds cannot state (the recipe loader checks those before this)."""
        if not os.path.exists(self.pool):
            raise DataError(f"{where}: pool '{self.pool}' does not exist; run scripts/run_completions.py first")
        if not self.aspects:
            raise RecipeError(f"{where}: aspects is empty; list one or more of {', '.join(ALL_ASPECTS)}")
        # a repeated aspect would pay for every rating twice
        refuse_duplicates(self.aspects, where, "aspects")
        if self.score == "overall" and not self.critique:
            raise RecipeError(f"{where}: score: overall needs the critique pass; set critique: true")
        if self.mode == "logprobs_local" and self.critique:
            raise RecipeError(
                f"{where}: the critique pass needs an endpoint judge (mode text or logprobs), not logprobs_local"
            )
        if self.mode == "logprobs_local" and not (
            self.judge_model_dir and os.path.isfile(os.path.join(self.judge_model_dir, "config.json"))
        ):
            raise RecipeError(
                f"{where}: mode logprobs_local needs judge_model_dir, a model directory (got {self.judge_model_dir!r})"
            )


def check_judge(recipe: Recipe) -> None:
    where = recipe.path
    args: JudgeArguments = check_generation(recipe, "pool")
    judge_templates()  # a prompt template edited out of its contract stops the stage here, before any request
    if args.mode != "logprobs_local":
        recipe.parsed["judge"] = load_teacher(args.judge, f"{where}: judge")
