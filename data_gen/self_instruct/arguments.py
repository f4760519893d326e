"""The self-instruct recipe: its keys and the rules between them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from distill_core.errors import DataError, RecipeError
from distill_core.recipe import Recipe

from ..endpoints import load_teacher
from ..stage.arguments import GenerationArguments, check_generation


@dataclass
class SelfInstructArguments(GenerationArguments):
    seed_tasks: str = field(
        default="",
        metadata={
            "help": "JSONL of human seed tasks: {instruction, instances: [{input, output}], is_classification}."
        },
    )
    num_instructions: int = field(
        default=100, metadata={"help": "How many new machine instructions to collect.", "min": 1}
    )
    human_examples: int = field(default=6, metadata={"help": "Seed tasks shown in each generation prompt.", "min": 1})
    machine_examples: int = field(
        default=2,
        metadata={
            "help": "Machine tasks shown in each generation prompt (seeds fill in while the pool is small).",
            "min": 0,
        },
    )
    instructions_per_request: int = field(
        default=8, metadata={"help": "New tasks asked for in each generation prompt.", "min": 1}
    )
    requests_per_round: int = field(
        default=8, metadata={"help": "Generation prompts sent concurrently per round.", "min": 1}
    )
    max_rounds: int = field(
        default=100,
        metadata={"help": "Stop after this many rounds even if fewer instructions were accepted.", "min": 1},
    )
    temperature: float = field(default=0.7, metadata={"help": "Generation temperature (0.7 in the paper).", "min": 0})
    top_p: float = field(
        default=0.5, metadata={"help": "Generation top_p (0.5 in the paper).", "exclusive_min": 0, "max": 1}
    )
    max_tokens: int = field(default=1024, metadata={"help": "max_tokens of a generation request.", "min": 1})
    rouge_threshold: float = field(
        default=0.7,
        metadata={
            "help": "Reject an instruction whose ROUGE-L F1 with any pool instruction is above this.",
            "min": 0,
            "max": 1,
        },
    )
    min_words: int = field(
        default=3, metadata={"help": "Reject instructions of fewer words (the paper: more than 3 words).", "min": 1}
    )
    max_words: int = field(default=150, metadata={"help": "Reject instructions of more words.", "min": 1})
    generate_instances: bool = field(
        default=True, metadata={"help": "Ask the teacher for an input/output instance of each new instruction."}
    )
    instance_max_tokens: int = field(default=512, metadata={"help": "max_tokens of an instance request.", "min": 1})
    instance_temperature: float = field(
        default=0.0, metadata={"help": "Temperature of classification checks and instances.", "min": 0}
    )

    def check(self, where: str) -> None:
        """Rules a key's type and bounds cannot state (the recipe loader checks those before this)."""
        if not self.seed_tasks:
            raise RecipeError(f"{where}: required key 'seed_tasks' is missing; point it at a JSONL of seed tasks")
        if not os.path.isfile(self.seed_tasks):
            raise DataError(
                f"{where}: seed_tasks file '{self.seed_tasks}' does not exist; the 175 Self-Instruct seeds "
                f"are data/seed_tasks.jsonl of the self-instruct repository"
            )
        if self.min_words > self.max_words:
            raise RecipeError(
                f"{where}: min_words ({self.min_words}) must be <= max_words ({self.max_words}); raise "
                f"max_words or lower min_words"
            )


def check_self_instruct(recipe: Recipe) -> None:
    where = recipe.path
    args: SelfInstructArguments = check_generation(recipe)
    recipe.parsed["teacher"] = load_teacher(args.teacher, f"{where}: teacher")
