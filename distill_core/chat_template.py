"""Chat formatting: the Zephyr template and the tokenizer rules every training stage relies on.

Rules (checked by tests on golden strings):
- the tokenizer's own chat template is used; a tokenizer without one gets the Zephyr template;
- the template writes BOS itself, and chat tokenization adds no special tokens, so there is one BOS;
- EOS closes every assistant turn and sits inside the ``{% generation %}`` span, so it is trained on;
- the pad token is never the EOS token (a padded EOS would be masked out of the loss).
"""

from __future__ import annotations

import logging

from distill_core.errors import RecipeError

logger = logging.getLogger(__name__)

# <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n...</s>\n  (Zephyr's format; BOS written once up front)
ZEPHYR_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% elif message['role'] in ['system', 'user'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% else %}"
    "{{ raise_exception('Zephyr chat template: unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def prepare_tokenizer(tokenizer, *, need_generation_markers: bool = False, model_path: str = ""):
    """Apply the chat-template and pad-token rules in place. Returns whether a pad token was added."""
    if not getattr(tokenizer, "chat_template", None):
        logger.info("tokenizer of %s has no chat template: using the Zephyr template", model_path or "the model")
        tokenizer.chat_template = ZEPHYR_CHAT_TEMPLATE
    if need_generation_markers and "{% generation %}" not in tokenizer.chat_template and "{%- generation %}" not in tokenizer.chat_template:
        raise RecipeError(
            f"assistant_only_loss needs a chat template with {{% generation %}} markers, and the one of "
            f"{model_path or 'this tokenizer'} has none; set assistant_only_loss: false, or remove the tokenizer's "
            f"chat_template so the Zephyr template (which has them) is used"
        )
    if tokenizer.eos_token is None:
        raise RecipeError(f"tokenizer of {model_path or 'the model'} has no eos_token; set one in its tokenizer_config.json")

    added = False
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        unk = getattr(tokenizer, "unk_token", None)
        if unk is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = unk  # Mistral's choice: <unk> never appears in real text
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            added = True
        logger.info("pad token set to %r (distinct from eos %r)", tokenizer.pad_token, tokenizer.eos_token)
    return added
