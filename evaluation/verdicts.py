"""What an evaluation judge's reply must state, read with the judge's own parsers (data_gen.judge.parsing).

- MT-Bench single-answer grading: a 1-10 rating written ``[[r]]`` (decimals allowed, as FastChat reads them),
  else ``[r]``. FastChat records an unreadable rating as -1 and drops it, and never checks the scale; here an
  unreadable or off-scale rating is re-asked and, if it never comes, counted as a failure.
- MT-Bench pairwise: ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie).
- Arena-Hard-Auto: ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]`` or ``[[B>>A]]``, else the same in single
  brackets. Arena-Hard-Auto takes the last verdict of a reply; here two different verdicts in one reply are
  refused and re-asked like two different ratings, since either may be the one the judge meant.
"""

from __future__ import annotations

import re

from data_gen.judge.parsing import ScoreLine, VerdictLine, parse_score, parse_verdict

_NUMBER = r"(\d+(?:\.\d+)?)"

MT_BENCH_RATING = ScoreLine(
    (re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"), re.compile(r"\[\s*" + _NUMBER + r"\s*\]")),
    1,
    10,
    form="Rating: [[N]]",
    name="rating",
    whole=False,
)

PAIRWISE = VerdictLine(
    (re.compile(r"\[\[\s*([ABC])\s*\]\]"),),
    {"A": "A", "B": "B", "C": "tie"},
    form="[[A]], [[B]] or [[C]]",
    name="verdict",
)

_ARENA_LABELS = {label: label for label in ("A>>B", "A>B", "A=B", "B>A", "B>>A")}
_ARENA = "(" + "|".join(re.escape(label) for label in sorted(_ARENA_LABELS, key=len, reverse=True)) + ")"
ARENA = VerdictLine(
    (re.compile(r"\[\[\s*" + _ARENA + r"\s*\]\]"), re.compile(r"(?<!\[)\[\s*" + _ARENA + r"\s*\](?!\])")),
    _ARENA_LABELS,
    form="[[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]]",
    name="verdict",
)


def read_rating(reply: str) -> tuple[float | None, str | None]:
    """An MT-Bench single-answer rating and None, or None and why the reply is unusable."""
    return parse_score(reply, MT_BENCH_RATING)


def read_pairwise(reply: str) -> tuple[str | None, str | None]:
    """An MT-Bench pairwise verdict ("A", "B" or "tie") and None, or None and why the reply is unusable."""
    return parse_verdict(reply, PAIRWISE)


def read_arena(reply: str) -> tuple[str | None, str | None]:
    """An Arena-Hard-Auto verdict label and None, or None and why the reply is unusable."""
    return parse_verdict(reply, ARENA)
