"""dSFT: supervised fine-tuning on teacher dialogues with TRL's SFTTrainer."""

from __future__ import annotations

import logging

from distill_core.recipe import Recipe

from . import session
from .data import SFT_LAYOUTS, load_mixture
from .model import load_causal_lm, load_tokenizer, model_init_kwargs

logger = logging.getLogger(__name__)


def train_sft(recipe: Recipe) -> str:
    """Train and save; returns the output directory."""
    setup = session.start(recipe)
    args, model_args = setup.training, setup.model
    train, test = load_mixture(recipe.parsed["mixture"], SFT_LAYOUTS, "SFT")
    tokenizer, added_pad = load_tokenizer(model_args, trust_remote_code=args.trust_remote_code, need_generation_markers=bool(args.assistant_only_loss))

    from transformers import set_seed
    from trl import SFTTrainer, get_peft_config

    set_seed(args.seed)  # before the model: LoRA adapters are initialised randomly
    model = load_causal_lm(model_args.model_name_or_path, model_init_kwargs(model_args, setup.runtime, trust_remote_code=args.trust_remote_code), tokenizer, added_pad)
    session.log_formatted_samples(tokenizer, train, setup.data.log_samples, session.render_conversation)
    if test is None and args.eval_strategy != "no":
        logger.warning("eval_strategy is %s but the mixture has no test data: evaluation is skipped", args.eval_strategy)
        args.eval_strategy = "no"
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=test if args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    session.announce(setup)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    details = {"train_examples": len(train), "eval_examples": len(test) if test is not None else 0,
               "packing": f"{args.packing} ({args.packing_strategy})" if args.packing else "off",
               "assistant-only loss": args.assistant_only_loss}
    return session.finish(trainer, tokenizer, setup, "dSFT", details)
