"""Golden strings for chat formatting, checked on the tokenizer and on what TRL's trainers actually build."""

from __future__ import annotations

import pytest

from distill_core.chat_template import ZEPHYR_CHAT_TEMPLATE, prepare_tokenizer
from distill_core.errors import RecipeError

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "2 plus 3 is 5."},
    {"role": "user", "content": "And 4 plus 4?"},
    {"role": "assistant", "content": "4 plus 4 is 8."},
]
GOLDEN = (
    "<s><|system|>\nYou are terse.</s>\n"
    "<|user|>\nWhat is 2 plus 3?</s>\n"
    "<|assistant|>\n2 plus 3 is 5.</s>\n"
    "<|user|>\nAnd 4 plus 4?</s>\n"
    "<|assistant|>\n4 plus 4 is 8.</s>\n"
)


@pytest.fixture
def tokenizer(smoke_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smoke_assets / "runs" / "smoke" / "tiny-model"))
    prepare_tokenizer(tok, need_generation_markers=True)
    return tok


def test_rendered_text_matches_the_zephyr_golden_string(tokenizer):
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == GOLDEN
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|system|>\nYou are terse.</s>\n<|user|>\nWhat is 2 plus 3?</s>\n<|assistant|>\n"


def test_one_bos_and_every_assistant_eos_is_in_the_loss_mask(tokenizer):
    out = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    eos_positions = [i for i, t in enumerate(ids) if t == tokenizer.eos_token_id]
    assert len(eos_positions) == 5  # one per turn
    trained_eos = [i for i in eos_positions if mask[i]]
    assert len(trained_eos) == 2, "the EOS closing each assistant turn is trained on, the others are not"
    trained_text = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained_text == "2 plus 3 is 5.</s>4 plus 4 is 8.</s>"


def test_pad_is_distinct_from_eos(tokenizer):
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_tokenizer_without_template_or_pad_gets_zephyr_and_a_distinct_pad(tokenizer):
    tokenizer.chat_template = None
    tokenizer.pad_token = tokenizer.eos_token  # the classic mistake
    prepare_tokenizer(tokenizer)
    assert tokenizer.chat_template == ZEPHYR_CHAT_TEMPLATE
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_assistant_only_loss_refuses_a_template_without_generation_markers(tokenizer):
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(RecipeError, match="generation"):
        prepare_tokenizer(tokenizer, need_generation_markers=True)


def _args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path), report_to=[], bf16=False, max_length=128, **kw)


def test_sft_trainer_tokenization_has_one_bos_and_trains_on_assistant_eos(tokenizer, smoke_assets, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(str(smoke_assets / "runs" / "smoke" / "tiny-model"))
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"messages": CONVERSATION}]),
        args=_args(SFTConfig, tmp_path, assistant_only_loss=True, packing=False),
    )
    row = trainer.train_dataset[0]
    ids = row["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    trained = [label for label in row["labels"] if label != -100]  # what the loss sees
    assert trained.count(tokenizer.eos_token_id) == 2 and trained[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(trained) == "2 plus 3 is 5.</s>4 plus 4 is 8.</s>"


def test_dpo_trainer_tokenization_has_one_bos_and_eos_ends_each_completion(tokenizer, smoke_assets, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    path = str(smoke_assets / "runs" / "smoke" / "tiny-model")
    model = AutoModelForCausalLM.from_pretrained(path)
    ref = AutoModelForCausalLM.from_pretrained(path)
    data = Dataset.from_list(
        [
            {
                "prompt": CONVERSATION[:2],
                "chosen": [CONVERSATION[2]],
                "rejected": [{"role": "assistant", "content": "2 plus 3 is 6."}],
            }
        ]
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref, processing_class=tokenizer, train_dataset=data, args=_args(DPOConfig, tmp_path)
    )
    row = trainer.train_dataset[0]
    assert row["prompt_ids"][0] == tokenizer.bos_token_id
    for side in ("chosen_ids", "rejected_ids"):
        full = row["prompt_ids"] + row[side]
        assert full.count(tokenizer.bos_token_id) == 1
        assert tokenizer.eos_token_id in row[side], "EOS must close the completion so it is learned"
    assert tokenizer.decode(row["chosen_ids"]).startswith("2 plus 3 is 5.</s>")
