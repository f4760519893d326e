"""dDPO: preference optimisation of the dSFT model against a frozen reference, with TRL's DPOTrainer."""

from __future__ import annotations

import logging

from distill_core.recipe import Recipe

from . import session
from .data import PREFERENCE_LAYOUTS, load_mixture
from .model import load_causal_lm, load_tokenizer, model_init_kwargs

logger = logging.getLogger(__name__)


def train_dpo(recipe: Recipe) -> str:
    """Train and save; returns the output directory.

    Reference modes (``ref_mode``):
    - ``model``: an explicit frozen copy of ``ref_model_name_or_path`` (default: the starting model);
    - ``precomputed``: reference log-probs computed once by the starting model before training, no copy kept;
    - ``adapter``: with LoRA, the policy with its adapter disabled is the reference.
    """
    mode = recipe.get("ref_mode", "model")
    setup = session.start(recipe, precompute_ref_log_probs=(mode == "precomputed"))
    args, model_args = setup.training, setup.model
    train, test = load_mixture(recipe.parsed["mixture"], PREFERENCE_LAYOUTS, "DPO")
    tokenizer, added_pad = load_tokenizer(model_args, trust_remote_code=args.trust_remote_code, need_generation_markers=False)

    from transformers import set_seed
    from trl import DPOTrainer, get_peft_config

    set_seed(args.seed)
    init_kwargs = model_init_kwargs(model_args, setup.runtime, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(model_args.model_name_or_path, init_kwargs, tokenizer, added_pad)
    ref_model = None
    ref_path = setup.data.ref_model_name_or_path or model_args.model_name_or_path
    if mode == "model":
        ref_model = load_causal_lm(ref_path, init_kwargs, tokenizer, added_pad)
    session.log_formatted_samples(tokenizer, train, setup.data.log_samples, session.render_preference)
    if test is None and args.eval_strategy != "no":
        logger.warning("eval_strategy is %s but the mixture has no test data: evaluation is skipped", args.eval_strategy)
        args.eval_strategy = "no"
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=train,
        eval_dataset=test if args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    reference = {"model": f"frozen copy of {ref_path}", "precomputed": "log-probs precomputed by the starting model",
                 "adapter": "the base with the LoRA adapter disabled"}[mode]
    logger.info("DPO reference: %s; beta=%g loss_type=%s", reference, args.beta, args.loss_type)
    session.announce(setup)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    details = {"train_examples": len(train), "eval_examples": len(test) if test is not None else 0,
               "reference": reference, "beta": args.beta, "loss_type": ", ".join(args.loss_type)}
    return session.finish(trainer, tokenizer, setup, "dDPO", details)
