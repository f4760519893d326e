"""dSFT: supervised fine-tuning on teacher dialogues with TRL's SFTTrainer."""

from __future__ import annotations

from distill_core.recipe import Recipe

from . import session
from .data import SFT_LAYOUTS


def train_sft(recipe: Recipe) -> str:
    """Train and save; returns the output directory."""
    setup = session.start(recipe)
    args = setup.training
    inputs = session.load_inputs(setup, SFT_LAYOUTS, "SFT", session.render_conversation,
                                 need_generation_markers=bool(args.assistant_only_loss))
    from trl import SFTTrainer, get_peft_config

    trainer = SFTTrainer(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train,
        eval_dataset=inputs.test if args.eval_strategy != "no" else None,
        processing_class=inputs.tokenizer,
        peft_config=get_peft_config(setup.model),
    )
    session.announce(setup)
    trainer.train(resume_from_checkpoint=session.resume_point(args))
    details = {"train_examples": len(inputs.train), "eval_examples": len(inputs.test) if inputs.test is not None else 0,
               "packing": f"{args.packing} ({args.packing_strategy})" if args.packing else "off",
               "assistant-only loss": args.assistant_only_loss}
    return session.finish(trainer, inputs.tokenizer, setup, "dSFT", details)
