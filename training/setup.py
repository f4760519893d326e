"""Trainer set-up, shared by every training script: runtime and configs, inputs, training, then the saved model
with its card and manifest."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from distill_core.errors import RecipeError
from distill_core.logs import setup_logging
from distill_core.placement import describe_process
from distill_core.recipe import Recipe

from .runtime import Runtime, batch_line, decide_runtime, effective_global_batch, is_main_process

logger = logging.getLogger(__name__)


@dataclass
class Setup:
    recipe: Recipe
    runtime: Runtime
    data: Any
    model: Any  # trl.ModelConfig
    training: Any  # trl.SFTConfig / trl.DPOConfig


def start(recipe: Recipe, **forced_training: Any) -> Setup:
    """Decide the runtime, then build the TRL configs with the machine's precision/backend forced in."""
    setup_logging()
    runtime = decide_runtime(
        bf16=recipe.get("bf16"),
        fp16=recipe.get("fp16"),
        attn_implementation=recipe.get("attn_implementation"),
        dtype=recipe.get("dtype"),
        full_weights=not recipe.get("use_peft"),
        where=recipe.path,
    )
    for note in runtime.notes:
        logger.warning("%s", note)
    model_args = recipe.build("model", attn_implementation=runtime.attn_implementation)
    if "chat_template_path" in recipe.sections.get("training", {}):
        forced_training["chat_template_path"] = None  # applied by prepare_tokenizer, the one place templates are set
    training = recipe.build("training", **runtime.training_overrides(), **forced_training)
    logger.info("%s", describe_process(training.world_size, training.process_index, training.local_process_index))
    data = recipe.build("data")
    return Setup(recipe, runtime, data, model_args, training)


@dataclass
class Inputs:
    train: Any
    test: Any  # None when the mixture has no test data
    tokenizer: Any
    model: Any
    init_kwargs: dict  # from_pretrained kwargs, reused for a reference model
    added_pad: bool


def load_inputs(setup: Setup, layouts, stage: str, render, *, need_generation_markers: bool = False) -> Inputs:
    """Data first (cheap to reject), then tokenizer and model; logs formatted samples."""
    from .data import load_mixture
    from .model import load_causal_lm, load_tokenizer, model_init_kwargs

    args, model_args = setup.training, setup.model
    # each node's main process loads and caches the data first; the other ranks then read its cache
    with args.main_process_first(local=True, desc="loading the dataset mixture"):
        train, test = load_mixture(setup.recipe.parsed["mixture"], layouts, stage)
    tokenizer, added_pad = load_tokenizer(
        model_args,
        trust_remote_code=args.trust_remote_code,
        need_generation_markers=need_generation_markers,
        pinned=setup.recipe.parsed.get("chat_template"),
    )
    from transformers import set_seed

    set_seed(args.seed)  # before the model: LoRA adapters are initialised randomly
    init_kwargs = model_init_kwargs(
        model_args, setup.runtime, trust_remote_code=args.trust_remote_code, extra=args.model_init_kwargs
    )
    args.model_init_kwargs = None  # consumed here; TRL would warn that an instantiated model ignores them
    model = load_causal_lm(model_args.model_name_or_path, init_kwargs, tokenizer, added_pad)
    log_formatted_samples(tokenizer, train, setup.data.log_samples, render)
    if test is None and args.eval_strategy != "no":
        logger.warning(
            "eval_strategy is %s but the mixture has no test data: evaluation is skipped", args.eval_strategy
        )
        args.eval_strategy = "no"
    return Inputs(train, test, tokenizer, model, init_kwargs, added_pad)


def announce(setup: Setup) -> str:
    line = batch_line(setup.training, setup.runtime)
    if is_main_process():
        logger.info("%s", line)
    return line


def trainer_kwargs(setup: Setup, inputs: Inputs) -> dict[str, Any]:
    """What every TRL trainer here is built with: model, data, tokenizer, adapters and the preemption callback.

    A SIGTERM (preemption, time limit) saves a checkpoint and exits for a rerun.
    """
    from trl import get_peft_config

    from .preemption import PreemptionCallback

    args = setup.training
    return dict(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train,
        eval_dataset=inputs.test if args.eval_strategy != "no" else None,
        processing_class=inputs.tokenizer,
        peft_config=get_peft_config(setup.model),
        callbacks=[PreemptionCallback()],
    )


def train(trainer, setup: Setup) -> None:
    """Adapters of a quantized model kept in fp32, the batch line logged, then train (resuming when it can)."""
    from .model import keep_adapters_in_fp32

    if setup.model.load_in_4bit or setup.model.load_in_8bit:
        keep_adapters_in_fp32(trainer.model)
    announce(setup)
    trainer.train(resume_from_checkpoint=resume_point(setup.training))


def resume_point(args) -> str | None:
    """The checkpoint to resume from: the recipe's, else the newest complete one in output_dir.

    A run stopped by Ctrl-C, a crash or a pre-empted job is resumed by rerunning the same command. A checkpoint
    cut short while being written has no trainer_state.json and is passed over.
    """
    if args.resume_from_checkpoint:
        if not os.path.isdir(args.resume_from_checkpoint):
            raise RecipeError(f"resume_from_checkpoint '{args.resume_from_checkpoint}' is not a checkpoint directory")
        return args.resume_from_checkpoint
    if not os.path.isdir(args.output_dir):
        return None
    found = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(args.output_dir)
        if (m := re.fullmatch(r"checkpoint-(\d+)", name))
    )
    for _, name in reversed(found):
        path = os.path.join(args.output_dir, name)
        if os.path.exists(os.path.join(path, "trainer_state.json")):
            logger.info("resuming from %s (delete %s to start over)", path, args.output_dir)
            return path
        logger.warning("skipping incomplete checkpoint %s", path)
    return None


def log_formatted_samples(tokenizer, dataset, n: int, render) -> None:
    """Log the first n training examples exactly as the model will see them."""
    if not is_main_process() or n <= 0:
        return
    for i in range(min(n, len(dataset))):
        logger.info("formatted training sample %d:\n%s", i, render(tokenizer, dataset[i]))


def render_conversation(tokenizer, example: dict) -> str:
    if "messages" in example:
        return tokenizer.apply_chat_template(example["messages"], tokenize=False)
    if "prompt" in example and "completion" in example:
        if isinstance(example["prompt"], list):
            return tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        return example["prompt"] + example["completion"]
    return example.get("text", "")


def render_preference(tokenizer, example: dict) -> str:
    prompt = example.get("prompt", [])
    if isinstance(example["chosen"], list):
        chosen = tokenizer.apply_chat_template(prompt + example["chosen"], tokenize=False)
        rejected = tokenizer.apply_chat_template(prompt + example["rejected"], tokenize=False)
    else:
        chosen, rejected = prompt + example["chosen"], prompt + example["rejected"]
    return f"--- chosen ---\n{chosen}\n--- rejected ---\n{rejected}"


def finish(trainer, tokenizer, setup: Setup, stage: str, details: dict[str, Any]) -> str:
    """Save gathered weights, the tokenizer, a generation config with eos, the recipe and a model card."""
    out = setup.training.output_dir
    trainer.model.config.use_cache = True
    trainer.save_model(out)  # under ZeRO-3 this gathers the 16-bit weights (stage3_gather_16bit_weights_on_model_save)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(out)
        _write_generation_config(out, tokenizer, trainer.model)
        with open(os.path.join(out, "recipe.yaml"), "w", encoding="utf-8") as f:
            f.write(setup.recipe.text)
        from .card import write_model_card

        write_model_card(out, stage=stage, setup=setup, trainer=trainer, details=details)
        _write_training_manifest(out, stage, setup, trainer, details)
        logger.info("saved %s model to %s", stage, out)
    trainer.accelerator.wait_for_everyone()
    return out


def _write_generation_config(out: str, tokenizer, model) -> None:
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(out)
    except OSError:
        base = getattr(model, "generation_config", None)
        gen = base if base is not None else GenerationConfig()
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    gen.save_pretrained(out)


def _write_training_manifest(out: str, stage: str, setup: Setup, trainer, details: dict[str, Any]) -> None:
    from distill_core.records import recipe_record, write_manifest

    from .metrics import metrics_summary

    args = setup.training
    write_manifest(
        out,
        stage,
        recipe=recipe_record(setup.recipe),
        inputs={
            "model": setup.model.model_name_or_path,
            "datasets": [s.id for s in setup.recipe.parsed["mixture"].datasets],
        },
        counts={k: v for k, v in details.items() if isinstance(v, (int, float, str, bool))},
        effective_global_batch=effective_global_batch(
            args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size
        ),
        runtime={
            "precision": setup.runtime.precision,
            "attn_implementation": setup.runtime.attn_implementation,
            "world_size": args.world_size,
        },
        metrics=metrics_summary(trainer.state.log_history),
        log_history=trainer.state.log_history,
        cost_usd=0.0,
        wall_time_s=round(sum(r.get("train_runtime", 0) for r in trainer.state.log_history), 2),
    )
