"""dSFT: supervised fine-tuning on teacher dialogues with TRL's SFTTrainer."""

from __future__ import annotations

import contextlib
import logging

from distill_core.recipe import Recipe

from .columns import SFT_LAYOUTS
from .setup import finish, load_inputs, render_conversation, start, train, trainer_kwargs

logger = logging.getLogger(__name__)


def train_sft(recipe: Recipe) -> str:
    """Train and save; returns the output directory."""
    setup = start(recipe)
    args = setup.training
    inputs = load_inputs(
        setup, SFT_LAYOUTS, "SFT", render_conversation, need_generation_markers=bool(args.assistant_only_loss)
    )
    from trl import SFTTrainer

    packing: dict[str, dict] = {}
    with measure_packing(packing):
        trainer = SFTTrainer(**trainer_kwargs(setup, inputs))
    train(trainer, setup)
    details = {
        "train_examples": len(inputs.train),
        "eval_examples": len(inputs.test) if inputs.test is not None else 0,
        "packing": f"{args.packing} ({args.packing_strategy})" if args.packing else "off",
        "assistant-only loss": args.assistant_only_loss,
    }
    if "train" in packing:
        details["packing tokens dropped"] = packing["train"]["dropped"]
        details["packing fill"] = f"{packing['train']['fill']:.1%}"
    return finish(trainer, inputs.tokenizer, setup, "dSFT", details)


@contextlib.contextmanager
def measure_packing(into: dict[str, dict]):
    """Count the tokens TRL's packing keeps, drops and pads, while the trainer is built.

    ``pack_dataset`` is wrapped for the duration: token counts are read from the Arrow lengths of ``input_ids``
    before and after packing (no Python lists). ``bfd`` cuts the tail of every example longer than max_length;
    ``bfd_split`` carries the tail into another sequence; both are reported, so a loss is never silent.
    """
    import pyarrow.compute as pc
    from trl.trainer import sft_trainer

    original = sft_trainer.pack_dataset

    def tokens(dataset) -> int:
        column = dataset.with_format("arrow")[:]["input_ids"]
        return int(pc.sum(pc.list_value_length(column)).as_py() or 0)

    def counting(dataset, seq_length, strategy="bfd", map_kwargs=None):
        before = tokens(dataset)
        packed = original(dataset, seq_length, strategy, map_kwargs)
        after = tokens(packed)
        name = "train" if "train" not in into else "eval"
        fill = after / max(1, len(packed) * seq_length)
        into[name] = {
            "before": before,
            "after": after,
            "dropped": before - after,
            "sequences": len(packed),
            "fill": fill,
        }
        logger.info(
            "packing %s (%s, %d tokens per sequence): %d tokens from %d examples into %d sequences; %d tokens "
            "dropped (%.2f%%); sequences %.1f%% full",
            name,
            strategy,
            seq_length,
            before,
            len(dataset),
            len(packed),
            before - after,
            100 * (before - after) / max(1, before),
            100 * fill,
        )
        if before - after and strategy == "bfd":
            logger.warning(
                "packing_strategy bfd cut %d tokens off examples longer than %d; bfd_split keeps them",
                before - after,
                seq_length,
            )
        return packed

    sft_trainer.pack_dataset = counting
    try:
        yield into
    finally:
        sft_trainer.pack_dataset = original
