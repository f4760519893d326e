"""The run report's building blocks, shared by its stage and evaluation parts: a turn of text cut to a length that
says how much was left out, and a PNG inlined as a data URL so the page stands alone."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

TURN_CHARS = 1000  # longer turns are cut, saying how much was left out


@dataclass
class Turn:
    role: str
    text: str
    chars_cut: int = 0


@dataclass
class Figure:
    caption: str
    src: str


def turn(role: Any, content: Any) -> Turn:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, indent=1)
    return Turn(str(role), text[:TURN_CHARS], max(0, len(text) - TURN_CHARS))


def inline_png(path: str, caption: str) -> Figure:
    with open(path, "rb") as f:
        return Figure(caption, "data:image/png;base64," + base64.b64encode(f.read()).decode())
