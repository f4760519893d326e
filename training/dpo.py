"""dDPO: preference optimisation of the dSFT model against a frozen reference, with TRL's DPOTrainer."""

from __future__ import annotations

import logging

from distill_core.recipe import Recipe

from . import session
from .data import PREFERENCE_LAYOUTS
from .model import load_causal_lm

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
    mode = recipe.get("ref_mode", "model")
    setup = session.start(recipe, precompute_ref_log_probs=(mode == "precomputed"))
    args = setup.training
    inputs = session.load_inputs(setup, PREFERENCE_LAYOUTS, "DPO", session.render_preference)
    ref_path = setup.data.ref_model_name_or_path or setup.model.model_name_or_path
    ref_model = None
    if mode == "model":
        ref_model = load_causal_lm(ref_path, inputs.init_kwargs, inputs.tokenizer, inputs.added_pad)
    from trl import DPOTrainer, get_peft_config

    trainer = DPOTrainer(
        model=inputs.model,
        ref_model=ref_model,
        args=args,
        train_dataset=inputs.train,
        eval_dataset=inputs.test if args.eval_strategy != "no" else None,
        processing_class=inputs.tokenizer,
        peft_config=get_peft_config(setup.model),
    )
    reference = REFERENCES[mode].format(path=ref_path)
    logger.info("DPO reference: %s; beta=%g loss_type=%s", reference, args.beta, args.loss_type)
    session.announce(setup)
    trainer.train(resume_from_checkpoint=session.resume_point(args))
    details = {"train_examples": len(inputs.train), "eval_examples": len(inputs.test) if inputs.test is not None else 0,
               "reference": reference, "beta": args.beta, "loss_type": ", ".join(args.loss_type)}
    return session.finish(trainer, inputs.tokenizer, setup, "dDPO", details)
