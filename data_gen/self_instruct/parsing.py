"""Reading the teacher's replies (numbered task lists, instances) and the filters a new instruction must pass."""

from __future__ import annotations

import re

from .arguments import SelfInstructArguments

# Tasks a text-only model cannot do (the original filter's words, with plurals).
BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
_NUMBERED = re.compile(r"^\s*(\d+)\s*[.):]\s*(.+?)\s*$")


def parse_numbered(text: str) -> list[str]:
    """Items of a numbered list; a reply without numbering counts each non-empty line as one task."""
    items = [m.group(2) for line in text.splitlines() if (m := _NUMBERED.match(line))]
    if items:
        return items
    return [line.strip() for line in text.splitlines() if line.strip()]


def rejection_reason(instruction: str, args: SelfInstructArguments) -> str | None:
    words = instruction.split()
    if len(words) < args.min_words:
        return "too_short"
    if len(words) > args.max_words:
        return "too_long"
    lowered = instruction.lower()
    if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in BLACKLIST):
        return "blacklisted_word"
    first = instruction[0]
    if not first.isascii():
        return "non_ascii_start"
    if not first.isalnum():
        return "punctuation_start"
    return None


def parse_instance(text: str, classification: bool) -> dict | None:
    """{input, output} from an instance reply; label-first replies put the label in output."""

    def field_after(label: str) -> str | None:
        m = re.search(rf"{label}\s*:\s*(.*?)(?=\n\s*(?:Input|Output|Class label)\s*:|\Z)", text, re.S | re.I)
        return m.group(1).strip() if m else None

    if classification:
        label, inp = field_after("Class label"), field_after("Input")
        if label and inp is not None:
            return {"input": inp, "output": label}
    inp, out = field_after("Input"), field_after("Output")
    if out:
        return {"input": inp or "", "output": out}
    stripped = text.strip()
    return {"input": "", "output": stripped} if stripped else None
