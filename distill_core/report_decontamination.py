"""The run report's view of a decontaminate stage: what its check found per benchmark, and the removed rows it shows
as examples, each with the matched benchmark text marked in its context.

It reads the stage's ``report.json``, which the stage writes whether its gate passed or not, so a run stopped by the
gate shows why. The page escapes every part of an excerpt and marks the span itself (training text may hold markup,
and ``**`` of its own): the parts come from the report, or, in a report without them, from its ``**`` marks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

FINDINGS_HEADER = ["benchmark", "items", "items hit", "contaminated fraction", "gate", "rows removed"]


@dataclass
class Excerpt:
    label: str  # benchmark, item, and where the row was: "mt_bench item 81: train_sft row 3, messages[0]"
    before: str
    span: str
    after: str


@dataclass
class DecontaminationView:
    rows: list[list[str]]  # FINDINGS_HEADER's columns, one row per benchmark
    examples: list[Excerpt] = field(default_factory=list)
    header: list[str] = field(default_factory=lambda: list(FINDINGS_HEADER))
    warnings: list[str] = field(default_factory=list)  # a gate breach let through (continue_on_contamination)


def _parts(example: dict) -> tuple[str, str, str]:
    parts = example.get("excerpt_parts")
    if isinstance(parts, list) and len(parts) == 3 and all(isinstance(p, str) for p in parts):
        return parts[0], parts[1], parts[2]
    before, _, rest = str(example.get("excerpt", "")).partition("**")
    span, _, after = rest.rpartition("**")
    return before, span, after


def _where(example: dict) -> str:
    split = f"{example['split']} " if example.get("split") else ""
    return f"{split}row {example.get('row_index', '?')}, {example.get('column', '?')}"


def read_decontamination(stage_dir: str, manifest: dict) -> DecontaminationView | None:
    """The findings of the decontaminate stage in ``stage_dir`` and the warnings of its ``manifest``; None where there
    is no readable report.json."""
    try:
        with open(os.path.join(stage_dir, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not all(isinstance(e, dict) and "items_hit" in e for e in report.values()):
        return None  # another stage's report.json
    warnings = manifest.get("warnings")
    view = DecontaminationView(rows=[], warnings=[str(w) for w in warnings] if isinstance(warnings, list) else [])
    for name, entry in sorted(report.items()):
        fraction, gate = entry.get("contaminated_fraction"), entry.get("max_contaminated_fraction")
        view.rows.append(
            [
                name,
                str(entry.get("items", "—")),
                str(entry.get("items_hit", "—")),
                f"{fraction:.2%}" if isinstance(fraction, (int, float)) else "—",
                f"{gate:.2%}"
                if isinstance(gate, (int, float))
                else ("none" if "max_contaminated_fraction" in entry else "—"),
                str(entry.get("rows_removed", "—")),
            ]
        )
        for example in entry.get("examples") or []:
            label = f"{name} item {example.get('item_id', '?')}: {_where(example)}"
            view.examples.append(Excerpt(label, *_parts(example)))
    return view
