"""The local logprob judge: a causal LM loaded in this process gives the next-token probabilities of the digits.

No server and no HTTP: each (completion, aspect) is one forward pass of the chat-formatted rating prompt, and the
rating is the expected digit as in endpoint logprob mode. torch and transformers are imported only here, when
this mode runs.
"""

from __future__ import annotations

from ..rating_vocabulary import RATING_RANGE
from .arguments import JudgeArguments
from .logprobs import rating_slots, slot_messages, store_expected


class LocalLogprobJudge:
    """A local causal LM scored in-process: the next-token distribution over the labels, by default the rating
    digits (the evaluation stage passes its own, e.g. the position letters of a pairwise comparison)."""

    def __init__(self, model_dir: str, labels: dict | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from distill_core.chat_template import prepare_tokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prepare_tokenizer(self.tokenizer)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        if labels is None:
            labels = {d: str(d) for d in range(RATING_RANGE[0], RATING_RANGE[1] + 1)}
        self.digit_ids: dict = {}
        for key, text in labels.items():
            ids = set()
            for form in (text, f" {text}"):  # a label may be its own token with or without a leading space
                toks = self.tokenizer.encode(form, add_special_tokens=False)
                if len(toks) == 1:
                    ids.add(toks[0])
            self.digit_ids[key] = sorted(ids)

    def probabilities(self, messages: list[dict]) -> dict:
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with self.torch.no_grad():
            logits = self.model(**ids).logits[0, -1]
        probs = self.torch.softmax(logits.float(), dim=-1)
        return {d: float(sum(probs[i] for i in token_ids)) for d, token_ids in self.digit_ids.items() if token_ids}


def rate_by_local_logprobs(rows: list[dict], args: JudgeArguments) -> dict:
    from tqdm import tqdm

    judge = LocalLogprobJudge(args.judge_model_dir)
    slots = rating_slots(rows, args.aspects)
    failures = 0
    for row, idx, aspect in tqdm(
        slots, desc="judging (local logprobs)", unit="rating", disable=not args.show_progress
    ):
        failures += not store_expected(row, idx, aspect, judge.probabilities(slot_messages(row, idx, aspect)))
    return {"judge_calls": len(slots), "failed_ratings": failures}
