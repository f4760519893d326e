"""Growing the pool of machine instructions, round by round, through the filters and the ROUGE-L novelty check."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from ..client import ChatRequest, ChatResult
from ..rouge import RougeLFilter
from ..session import GenerationSession
from ..stage.ids import derived_seed
from .arguments import SelfInstructArguments
from .parsing import parse_numbered, rejection_reason
from .templates import generation_prompt

logger = logging.getLogger(__name__)


@dataclass
class InstructionPool:
    """The instructions accepted so far, the ROUGE-L filter every instruction is checked against (seeds included),
    how many candidates were rejected for each reason, and the rounds sent."""

    similarity: RougeLFilter
    accepted: list[dict] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    rounds: int = 0

    @classmethod
    def from_seeds(cls, seeds: list[dict], threshold: float) -> "InstructionPool":
        similarity = RougeLFilter(threshold=threshold)
        for task in seeds:
            similarity.add(task["instruction"])
        return cls(similarity)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def consider(self, instruction: str, request_key: str, args: SelfInstructArguments) -> None:
        """Accept ``instruction`` if it passes the filters and is novel enough; else count why not."""
        reason = rejection_reason(instruction, args)
        verdict = self.similarity.check_and_add(instruction) if reason is None else None
        if verdict is not None and not verdict.novel:
            reason = "rouge_l_similar"
        if reason:
            self.reject(reason)
            return
        self.accepted.append(
            {
                "instruction": instruction,
                "most_similar": verdict.match,
                "rouge_l": round(verdict.score, 4),
                "round": self.rounds,
                "request_key": request_key,
            }
        )


def grow(
    gen: GenerationSession, pool: InstructionPool, seeds: list[dict], args: SelfInstructArguments, sampling: dict
) -> None:
    """Rounds of generation prompts until num_instructions are accepted or max_rounds have been sent."""
    while len(pool.accepted) < args.num_instructions and pool.rounds < args.max_rounds:
        results = gen.ask(
            "teacher",
            _round_requests(pool, seeds, args, sampling),
            f"self-instruct round {pool.rounds + 1} ({len(pool.accepted)}/{args.num_instructions})",
        )
        pool.rounds += 1
        if all(r.status == "failed" for r in results):
            # an endpoint that failed a whole round would fail the next ones too: stop, and let the
            # failure check report it instead of spending max_rounds rounds of retries
            logger.warning("every request of round %d failed: stopping", pool.rounds)
            break
        for result in results:  # request order, not arrival order: the pool grows the same way every run
            _take_reply(pool, result, args)
    if len(pool.accepted) < args.num_instructions:
        logger.warning(
            "stopped after %d rounds with %d of %d instructions",
            pool.rounds,
            len(pool.accepted),
            args.num_instructions,
        )


def _round_requests(
    pool: InstructionPool, seeds: list[dict], args: SelfInstructArguments, sampling: dict
) -> list[ChatRequest]:
    machine = [a["instruction"] for a in pool.accepted]
    requests = []
    for b in range(args.requests_per_round):
        rng = random.Random(derived_seed(args.seed, "generate", pool.rounds, b))
        prompt = generation_prompt(rng, seeds, machine, args)
        requests.append(
            ChatRequest(
                [{"role": "user", "content": prompt}], {**sampling, "seed": derived_seed(args.seed, pool.rounds, b)}
            )
        )
    return requests


def _take_reply(pool: InstructionPool, result: ChatResult, args: SelfInstructArguments) -> None:
    if not result.usable:
        pool.reject("failed_reply")
        return
    items = parse_numbered(result.text)
    if result.status == "truncated" and not args.keep_truncated and items:
        items = items[:-1]  # the last item was cut by the length limit
        pool.reject("cut_by_length")
    for item in items:
        if len(pool.accepted) >= args.num_instructions:
            break
        pool.consider(item, result.key, args)
