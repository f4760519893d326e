"""The judge's prompts, kept as text files in data_gen/prompt_templates/ultrafeedback/, and the messages built
from them.

Each file is a ``str.format`` template (a literal brace is written twice). The placeholders a file must use are its
contract, declared here and checked when the files are read, so an edited template that drops or misnames a field
stops the stage at validation rather than halfway through a paid run. The sha256 over every .txt file in the folder,
names and contents, goes into the stage's manifest as ``prompt_templates_sha256``.
"""

from __future__ import annotations

import functools
import os
import string
from dataclasses import dataclass

from distill_core.errors import UserError

from ..rating_vocabulary import ALL_ASPECTS, NA_ASPECTS, TYPED_ASPECTS
from ..stage import templates_hash

TEMPLATE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "prompt_templates", "ultrafeedback"
)

# file (relative to TEMPLATE_DIR) -> the placeholders it must use, no more and no fewer
CONTRACT: dict[str, frozenset[str]] = {
    "rate_texts.txt": frozenset({"rubric", "instruction", "texts", "k", "na", "type_hint"}),
    "rate_texts_reask.txt": frozenset({"error", "k", "na"}),
    "rate_one_digit.txt": frozenset({"rubric", "instruction", "text"}),
    "critique.txt": frozenset({"instruction", "text"}),
    "critique_reask.txt": frozenset({"error"}),
    # a rubric is inserted as a value, never formatted itself
    **{f"rubrics/{aspect}.txt": frozenset() for aspect in ALL_ASPECTS},
}


@dataclass(frozen=True)
class JudgeTemplates:
    texts: dict[str, str]  # file -> template text (its final newline dropped)
    sha256: str  # over every file in the folder

    def fill(self, name: str, **values) -> str:
        return self.texts[name].format(**values)

    def rubric(self, aspect: str) -> str:
        return self.texts[f"rubrics/{aspect}.txt"]


@functools.lru_cache(maxsize=None)
def judge_templates() -> JudgeTemplates:
    """The stage's templates, read once per process."""
    return read_templates(TEMPLATE_DIR)


def read_templates(folder: str, contract: dict[str, frozenset[str]] = CONTRACT) -> JudgeTemplates:
    """Every template in ``folder``, checked against ``contract`` (file -> the placeholders it must use)."""
    files = sorted(
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
        for root, _, names in os.walk(folder)
        for name in names
        if name.endswith(".txt")
    )
    texts = {}
    for name in files:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            texts[name] = f.read().removesuffix("\n")
    for name, fields in contract.items():
        if name not in texts:
            raise UserError(f"{folder}: prompt template {name} is missing; restore it from the repository")
        used = {field for _, field, _, _ in string.Formatter().parse(texts[name]) if field is not None}
        if fields and used != fields:
            raise UserError(
                f"{os.path.join(folder, name)}: the template uses {{{', '.join(sorted(used))}}} but must use "
                f"exactly {{{', '.join(sorted(fields))}}}; write a literal brace twice ({{{{ or }}}})"
            )
    return JudgeTemplates(texts, templates_hash(*(f"{name}\x00{texts[name]}" for name in files)))


def rating_messages(instruction: str, texts: list[str], aspect: str) -> list[dict]:
    """One aspect, every text at once, numbered in the order given (the caller shuffles)."""
    shown = "\n\n".join(f"Text {pos + 1}:\n{text}" for pos, text in enumerate(texts))
    templates = judge_templates()
    content = templates.fill(
        "rate_texts.txt",
        rubric=templates.rubric(aspect),
        instruction=instruction,
        texts=shown,
        k=len(texts),
        na=_na(aspect),
        type_hint='"type": <1-3 or null>, ' if aspect in TYPED_ASPECTS else "",
    )
    return [{"role": "user", "content": content}]


def rating_reask(error: str, k: int, aspect: str) -> str:
    return judge_templates().fill("rate_texts_reask.txt", error=error, k=k, na=_na(aspect))


def digit_messages(instruction: str, text: str, aspect: str) -> list[dict]:
    """One text, one aspect, a one-digit reply: the prompt of the logprob modes."""
    templates = judge_templates()
    content = templates.fill("rate_one_digit.txt", rubric=templates.rubric(aspect), instruction=instruction, text=text)
    return [{"role": "user", "content": content}]


def critique_messages(instruction: str, text: str) -> list[dict]:
    return [{"role": "user", "content": judge_templates().fill("critique.txt", instruction=instruction, text=text)}]


def critique_reask(error: str) -> str:
    return judge_templates().fill("critique_reask.txt", error=error)


def _na(aspect: str) -> str:
    return ' or "N/A"' if aspect in NA_ASPECTS else ""
