"""dDPO: preference optimisation of the dSFT model against a frozen reference, with TRL's DPOTrainer."""

from __future__ import annotations

import logging

from distill_core.recipe import Recipe

from .arguments import ref_mode
from .columns import PREFERENCE_LAYOUTS
from .model import load_causal_lm
from .setup import finish, load_inputs, render_preference, start, train, trainer_kwargs

logger = logging.getLogger(__name__)

REFERENCES = {
    "model": "frozen copy of {path}",
    "precomputed": "log-probs precomputed by the starting model",
    "adapter": "the base with the LoRA adapter disabled",
}


def train_dpo(recipe: Recipe) -> str:
    """Train and save; returns the output directory.

    Reference modes (``ref_mode``):
    - ``model``: an explicit frozen copy of ``ref_model_name_or_path`` (default: the starting model);
    - ``precomputed``: reference log-probs computed once by the starting model before training, no copy kept;
    - ``adapter``: with LoRA, the policy with its adapter disabled is the reference.
    """
    mode = ref_mode(recipe)
    setup = start(recipe, precompute_ref_log_probs=(mode == "precomputed"))
    args = setup.training
    inputs = load_inputs(setup, PREFERENCE_LAYOUTS, "DPO", render_preference)
    ref_path = setup.data.ref_model_name_or_path or setup.model.model_name_or_path
    ref_model = None
    if mode == "model":
        ref_model = load_causal_lm(ref_path, inputs.init_kwargs, inputs.tokenizer, inputs.added_pad)
    trainer = capped_prompt_trainer_class()(
        max_prompt_length=setup.data.max_prompt_length, ref_model=ref_model, **trainer_kwargs(setup, inputs)
    )
    reference = REFERENCES[mode].format(path=ref_path)
    logger.info("DPO reference: %s; beta=%g loss_type=%s", reference, args.beta, args.loss_type)
    train(trainer, setup)
    details = {
        "train_examples": len(inputs.train),
        "eval_examples": len(inputs.test) if inputs.test is not None else 0,
        "reference": reference,
        "beta": args.beta,
        "loss_type": ", ".join(args.loss_type),
        "max_prompt_length": setup.data.max_prompt_length or "none (prompts kept whole)",
        **{f"prompts cut to max_prompt_length ({name})": n for name, n in trainer.prompts_cut.items()},
    }
    return finish(trainer, inputs.tokenizer, setup, "dDPO", details)


def capped_prompt_trainer_class():
    """TRL's DPOTrainer with the prompt cap of the Zephyr recipe, which TRL 1.x no longer has.

    After TRL tokenizes an example, a prompt longer than ``max_prompt_length`` keeps its last tokens (and its BOS),
    so the end of the conversation, the part the answers reply to, survives; ``max_length`` then caps prompt plus
    answer. TRL drops examples whose prompt alone fills ``max_length``; with the cap that drop is decided after
    cutting, so long prompts are kept, as in the paper, instead of dropped.
    """
    from trl import DPOTrainer

    class CappedPromptDPOTrainer(DPOTrainer):
        def __init__(self, *args, max_prompt_length: int | None = None, **kwargs):
            self.max_prompt_length = max_prompt_length
            self.prompts_cut: dict[str, int] = {}
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            cap = self.max_prompt_length
            if cap is None:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            mode = args.truncation_mode
            args.truncation_mode = "keep_end"  # defers TRL's drop of prompts that fill max_length until after the cap
            try:
                dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            finally:
                args.truncation_mode = mode
            bos = getattr(processing_class, "bos_token_id", None)

            def cut(example):
                ids = example["prompt_ids"]
                if len(ids) <= cap:
                    return {"prompt_ids": ids, "_cut": False}
                head = [bos] if bos is not None and ids[0] == bos else []
                return {"prompt_ids": head + ids[len(ids) - (cap - len(head)) :], "_cut": True}

            dataset = dataset.map(cut, desc=f"cutting {dataset_name} prompts to their last {cap} tokens")
            self.prompts_cut[dataset_name] = int(sum(dataset["_cut"]))
            logger.info(
                "max_prompt_length %d: cut %d of %d %s prompts to their last %d tokens",
                cap,
                self.prompts_cut[dataset_name],
                len(dataset),
                dataset_name,
                cap,
            )
            dataset = dataset.remove_columns("_cut")
            if args.max_length is not None and mode == "keep_start":
                dataset = dataset.filter(lambda example: len(example["prompt_ids"]) < args.max_length)
            return dataset

    return CappedPromptDPOTrainer
