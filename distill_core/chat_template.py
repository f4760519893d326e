"""Chat formatting: the Zephyr template and the tokenizer rules every training stage relies on.

Rules (checked by tests on golden strings):
- the tokenizer's own chat template is used; a tokenizer without one gets the Zephyr template;
- the template writes BOS itself, and chat tokenization adds no special tokens, so there is one BOS;
- EOS closes every assistant turn and sits inside the ``{% generation %}`` span, so it is trained on;
- the pad token is never the EOS token (a padded EOS would be masked out of the loss).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

from distill_core.errors import RecipeError, first_line

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


# Templates a recipe may pin by name (``chat_template: zephyr``).
NAMED_CHAT_TEMPLATES = {"zephyr": ZEPHYR_CHAT_TEMPLATE}
_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")


def resolve_chat_template(inline: str | None, path: str | None, where: str) -> tuple[str, str] | None:
    """The template a recipe pins and a description of where it came from, checked (no tokenizer needed).

    ``inline`` is a template name from NAMED_CHAT_TEMPLATES or Jinja text; ``path`` is a Jinja file or a tokenizer
    directory whose template is taken. Returns None when the recipe pins none.
    """
    if inline and path:
        raise RecipeError(f"{where}: set chat_template or chat_template_path, not both")
    if inline:
        if inline in NAMED_CHAT_TEMPLATES:
            text, origin = NAMED_CHAT_TEMPLATES[inline], f"'{inline}' (recipe key chat_template)"
        elif "{{" in inline or "{%" in inline:
            text, origin = inline, "inline Jinja (recipe key chat_template)"
        else:
            raise RecipeError(
                f"{where}: chat_template {inline[:40]!r} is neither a template name "
                f"({', '.join(NAMED_CHAT_TEMPLATES)}) nor Jinja text; or use chat_template_path for a file"
            )
    elif path:
        text, origin = _read_template_file(os.path.expanduser(path), where), f"{path} (recipe key chat_template_path)"
    else:
        return None
    check_chat_template(text, where)
    return text, origin


def _read_template_file(path: str, where: str) -> str:
    import json

    if os.path.isdir(path):
        jinja = os.path.join(path, "chat_template.jinja")
        if os.path.isfile(jinja):
            path = jinja
        else:
            config = os.path.join(path, "tokenizer_config.json")
            template = (
                json.load(open(config, encoding="utf-8")).get("chat_template") if os.path.isfile(config) else None
            )
            if not isinstance(template, str):
                raise RecipeError(
                    f"{where}: chat_template_path '{path}' is a directory without a chat template "
                    f"(no chat_template.jinja, no chat_template in tokenizer_config.json)"
                )
            return template
    if not os.path.isfile(path):
        raise RecipeError(
            f"{where}: chat_template_path '{path}' does not exist; give a .jinja file or a tokenizer directory"
        )
    with open(path, encoding="utf-8") as f:
        return f.read()


def check_chat_template(text: str, where: str) -> None:
    """Compile the template and render a short conversation, so a broken template fails before any model loads."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "26 Jul 2024"
    sample = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]
    try:
        template = env.from_string(_GENERATION_TAG.sub("", text))
        rendered = template.render(messages=sample, bos_token="<s>", eos_token="</s>", add_generation_prompt=False)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise RecipeError(
            f"{where}: chat template does not render{f' (line {line})' if line else ''}: "
            f"{first_line(exc)}; fix the template"
        ) from None
    if "u" not in rendered or "a" not in rendered:
        raise RecipeError(f"{where}: chat template renders a conversation without its messages; fix the template")


def template_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def prepare_tokenizer(
    tokenizer, *, need_generation_markers: bool = False, model_path: str = "", pinned: tuple[str, str] | None = None
):
    """Apply the chat-template and pad-token rules in place. Returns whether a pad token was added.

    ``pinned`` is (template, origin) from :func:`resolve_chat_template`: a recipe's template wins over the
    tokenizer's own, which wins over the Zephyr fallback. The one used is logged with its digest.
    """
    if pinned is not None:
        tokenizer.chat_template, origin = pinned
    elif getattr(tokenizer, "chat_template", None):
        origin = f"the tokenizer's own, from {model_path or 'the model'}"
    else:
        tokenizer.chat_template, origin = (
            ZEPHYR_CHAT_TEMPLATE,
            f"Zephyr (the tokenizer of {model_path or 'the model'} has none)",
        )
    logger.info("chat template: %s, sha256 %s", origin, template_digest(tokenizer.chat_template))
    if (
        need_generation_markers
        and "{% generation %}" not in tokenizer.chat_template
        and "{%- generation %}" not in tokenizer.chat_template
    ):
        raise RecipeError(
            f"assistant_only_loss needs a chat template with {{% generation %}} markers, and the one of "
            f"{model_path or 'this tokenizer'} has none; set assistant_only_loss: false, or remove the tokenizer's "
            f"chat_template so the Zephyr template (which has them) is used"
        )
    if tokenizer.eos_token is None:
        raise RecipeError(
            f"tokenizer of {model_path or 'the model'} has no eos_token; set one in its tokenizer_config.json"
        )

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
