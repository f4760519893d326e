"""Reading a judge's reply: pure functions of (reply text, what the reply must hold) -> (result, why it is unusable).

``parse_ratings`` reads one rating per shown text (UltraFeedback's JSON object, a bare JSON array, or the
"Text N / Rating / Rationale" layout); ``parse_score`` reads the one score a reply states on a ``ScoreLine``
(the critique's "Overall score: N"; an MT-Bench "[[N]]" is another ScoreLine). Neither guesses: a reply that is
incomplete, off the scale or contradicts itself comes back with a one-line reason the caller can send back to the
judge, and nothing is ever clamped or rescaled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..rating_vocabulary import NA_ASPECTS, OVERALL_RANGE, RATING_RANGE, TYPED_ASPECTS


def parse_ratings(reply: str, k: int, aspect: str) -> tuple[dict[int, dict], str | None]:
    """Ratings by shown position (0-based) and an error saying what is missing, wrong or contradictory (None when
    complete).

    A usable reply holds ONE rating block (one JSON object or array, or the "Text N / Rating" layout) that rates each
    text ONCE. Anything else is refused as a whole, so the caller re-asks and, if it never resolves, records failures:
    picking one of two ratings would be a guess. Repeats are refused even when they agree: ratings reach completions
    only through the shown position, and a judge that rates a text twice or answers twice has lost track of which
    text is which, so agreeing numbers under confused labels can still score the wrong completion. A re-ask costs
    one request; a wrong preference pair silently trains the wrong way.
    """
    blocks, rest = _json_entries(reply)
    text_layout = _text_entries(rest)  # JSON blocks blanked out: their rationales may quote "Text N ... Rating: M"
    labelled = [("JSON", entries) for entries in blocks if entries]
    if text_layout:
        labelled.append(("text layout", text_layout))
    conflict = _conflicts(labelled)
    if conflict:
        return {}, conflict
    found: dict[int, dict] = {}
    problems = []
    for entry in (entry for _, block in labelled for entry in block):
        pos = _position(entry.get("text"))
        if pos is None or not 1 <= pos <= k:
            problems.append(f"an entry names text {entry.get('text')!r}")
            continue
        parsed = _rating(entry.get("rating"), aspect)
        if parsed is None:
            problems.append(f"text {pos} has rating {entry.get('rating')!r}")
            continue
        rating, status = parsed
        found[pos - 1] = {
            "rating": rating,
            "status": status,
            "rationale": str(entry.get("rationale", "")).strip(),
            **({"type": _type(entry.get("type"))} if aspect in TYPED_ASPECTS else {}),
        }
    missing = [p + 1 for p in range(k) if p not in found]
    if not missing:
        return found, None
    detail = "; ".join(problems[:3])
    return found, f"no valid rating for text(s) {missing}" + (f" ({detail})" if detail else "")


@dataclass(frozen=True)
class ScoreLine:
    """How a reply states its one score: patterns whose first group is the number (tried in order: a later one is
    read only when no earlier one matches, as MT-Bench reads "[[N]]" before "[N]"), the scale, whether only whole
    numbers count, and the words an error uses ("no 'Overall score: N' line", "2 different overall scores")."""

    patterns: tuple[re.Pattern, ...]
    low: int
    high: int
    form: str
    name: str
    whole: bool = True


@dataclass(frozen=True)
class VerdictLine:
    """How a reply states its one verdict: patterns whose first group is a label (tried in order, as ScoreLine's),
    the value each label stands for, and the words an error uses."""

    patterns: tuple[re.Pattern, ...]
    labels: dict[str, str]
    form: str
    name: str


OVERALL_SCORE = ScoreLine(
    (re.compile(r"overall\s*score\s*[:=]\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.I),),
    *OVERALL_RANGE,
    form="Overall score: N",
    name="overall score",
)


def parse_score(reply: str, line: ScoreLine) -> tuple[float | None, str | None]:
    """The one score the reply states, on the scale; with ``whole`` only whole numbers count (a 1 is never read
    as 10). Nothing is clamped: a score off the scale is an error the judge is told about.

    Two different scores in one reply are refused rather than resolved by position: the judge changed its mind or
    scored something else, and either reading may be the wrong one. The same score repeated is accepted, unlike a
    text rated twice by parse_ratings: the reply judges one answer, so there are no labels to confuse, and restating
    the score ("Overall score: 7/10" in the body, then the closing line) is ordinary.
    """
    value, error = _one_stated(reply, line.patterns, line.form, line.name)
    if error:
        return None, error
    number = float(value)
    if line.whole and ("." in value or not line.low <= number <= line.high):
        return None, f"score {value} is not a whole number from {line.low} to {line.high}"
    if not line.low <= number <= line.high:
        return None, f"score {value} is off the scale {line.low} to {line.high}"
    return (int(number) if number.is_integer() else number), None


def parse_verdict(reply: str, line: VerdictLine) -> tuple[str | None, str | None]:
    """The one verdict the reply states, as the value its label stands for; two different verdicts are refused,
    for the same reason as two different scores."""
    label, error = _one_stated(reply, line.patterns, line.form, line.name)
    return (None, error) if error else (line.labels[label], None)


def _one_stated(reply: str, patterns: tuple[re.Pattern, ...], form: str, name: str) -> tuple[str | None, str | None]:
    for pattern in patterns:
        found = pattern.findall(reply)
        if found:
            distinct = list(dict.fromkeys(found))
            if len(distinct) > 1:
                return None, f"{len(distinct)} different {name}s ({_listing(distinct)}) in one reply"
            return distinct[0], None
    return None, f"no '{form}' line"


def parse_overall(reply: str) -> tuple[int | None, str | None]:
    """The critique's 'Overall score: N', 1-10."""
    return parse_score(reply, OVERALL_SCORE)


def _rating(value: Any, aspect: str) -> tuple[int | None, str] | None:
    """(rating, status) or None if invalid. Only whole numbers on the scale count: a 10 is an error, never clamped."""
    if value is None or (isinstance(value, str) and value.strip().upper() in ("N/A", "NA", "NONE", "NULL")):
        return (None, "na") if aspect in NA_ASPECTS else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    low, high = RATING_RANGE
    if isinstance(value, int) and low <= value <= high:
        return value, "ok"
    return None


def _type(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 3 else None


def _position(value: Any) -> int | None:
    """The 1-based text number an entry names, or None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _conflicts(blocks: list[tuple[str, list[dict]]]) -> str | None:
    """What makes a reply ambiguous: several rating blocks, or a text rated more than once (equal or not)."""
    ratings: dict[int, list] = {}
    for _, entries in blocks:
        for entry in entries:
            pos = _position(entry.get("text"))
            if pos is not None:
                ratings.setdefault(pos, []).append(entry.get("rating"))
    parts = []
    if len(blocks) > 1:
        parts.append(f"{len(blocks)} rating blocks ({_listing([kind for kind, _ in blocks])}) in one reply")
    repeated = [(pos, values) for pos, values in sorted(ratings.items()) if len(values) > 1]
    for pos, values in repeated[:3]:
        times = "twice" if len(values) == 2 else f"{len(values)} times"
        parts.append(f"text {pos} rated {times} ({_listing([json.dumps(v) for v in values])})")
    if len(repeated) > 3:
        parts.append(f"{len(repeated) - 3} more texts rated more than once")
    return "; ".join(parts) or None


def _listing(items: list) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_JSON_START = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()


def _json_entries(reply: str) -> tuple[list[list[dict]], str]:
    """Every top-level JSON rating block in the reply (its entries), and the reply with those blocks blanked out.

    A rating block is an object with a "ratings" list or a bare list of entry objects. Each JSON value found is
    skipped whole, so the entries inside a block are not read again as values of their own.
    """
    blocks, spans = [], []
    pos = 0
    while (start := _JSON_START.search(reply, pos)) is not None:
        try:
            value, end = _DECODER.raw_decode(reply, start.start())
        except ValueError:
            pos = start.start() + 1
            continue
        if isinstance(value, dict) and isinstance(value.get("ratings"), list):
            blocks.append([e for e in value["ratings"] if isinstance(e, dict)])
            spans.append((start.start(), end))
        elif isinstance(value, list) and value and all(isinstance(e, dict) and "text" in e for e in value):
            blocks.append(value)
            spans.append((start.start(), end))
        pos = end
    rest, last = [], 0
    for begin, end in spans:
        rest.append(reply[last:begin])
        last = end
    rest.append(reply[last:])
    return blocks, "\n".join(rest)


_TEXT_BLOCK = re.compile(r"Text\s*(\d+)\s*:?(.*?)(?=(?:#+\s*)?(?:Output for\s*)?Text\s*\d+\s*:?|\Z)", re.S | re.I)
# A rationale runs to the next labelled line; "a rating: 5" inside it is prose, not a second rating.
_RATIONALE = re.compile(r"Rationale\s*:(.*?)(?=^[\s#*>-]*(?:Type|Rating|Rationale)\s*:|\Z)", re.S | re.I | re.M)
_RATING = re.compile(r"Rating\s*:\s*(N/?A|\d+(?:\.\d+)?)", re.I)


def _text_entries(reply: str) -> list[dict]:
    """The UltraFeedback-style text layout: 'Text N' headers followed by Type/Rating/Rationale lines.

    Every rating line outside the rationale becomes an entry, so a text given two ratings, under one header or
    two, shows up as a conflict instead of the first one winning.
    """
    entries = []
    for number, body in _TEXT_BLOCK.findall(reply):
        rationale = _RATIONALE.search(body)
        labels = _RATIONALE.sub("\n", body)
        kind = re.search(r"Type\s*:\s*(\d+|None|null)", labels, re.I)
        for raw in _RATING.findall(labels):
            value: Any = raw if raw.upper().replace("/", "") == "NA" else (float(raw) if "." in raw else int(raw))
            entries.append(
                {
                    "text": int(number),
                    "rating": value,
                    "type": kind.group(1) if kind else None,
                    "rationale": rationale.group(1).strip() if rationale else "",
                }
            )
    return entries
