"""One self-contained HTML page per run: stages, counts, cost, time, samples and the figures, PNGs inlined.

The page is rendered from ``templates/report.html.j2`` with autoescaping on: dataset text was written by a model
and may hold markup, and it is shown as text, never run. Samples are read into chat turns (role, then text), and
preference rows into their prompt turns with the chosen and rejected answers beside each other. Each stage links
its manifest, card and log by paths relative to the page, so a run directory moved or copied whole keeps its
report working.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .records import write_atomic
from .report_decontamination import DecontaminationView, read_decontamination
from .report_eval import read_evaluation
from .report_parts import TURN_CHARS, Figure, Turn, inline_png
from .report_parts import turn as _turn

FIGURES = ("training_curves.png", "preference_stats.png")
SAMPLE_FILES = ("prompts/train.jsonl", "sft/train.jsonl", "pool/train.jsonl", "prefs/train.jsonl")
# What every stage writes beside its outputs, as (label, file name).
STAGE_FILES = (("manifest", "manifest.json"), ("card", "README.md"), ("log", "stage.log"))
SAMPLES_PER_FILE = 2
__all__ = ["STAGE_FILES", "TURN_CHARS", "write_report"]


@dataclass
class Answer:
    """One of the alternatives to a prompt: the chosen or rejected answer of a pair, or a completion of a pool."""

    kind: str  # chosen, rejected or completion: the page colours them apart
    label: str
    turns: list[Turn]


@dataclass
class Sample:
    turns: list[Turn]
    answers: list[Answer] = field(default_factory=list)


@dataclass
class SampleFile:
    path: str
    rows: int
    samples: list[Sample]


@dataclass
class Link:
    label: str
    name: str
    href: str | None  # None when the stage has not written the file


@dataclass
class StageView:
    name: str
    kind: str
    status: str
    counts: str
    cost_usd: float
    wall_time_s: float
    ran: bool
    links: list[Link]
    metrics: list[tuple[str, str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    sample_files: list[SampleFile] = field(default_factory=list)
    decontamination: DecontaminationView | None = None  # a decontaminate stage's findings, also when its gate failed


def _manifest(d: str) -> dict[str, Any]:
    try:
        with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _turns(messages: Any) -> list[Turn]:
    """Chat messages as turns; a bare string is one user turn (the prompt of a prompt-only or pool row)."""
    if isinstance(messages, str):
        return [_turn("user", messages)]
    return [
        _turn(m.get("role", "?"), m.get("content", "")) if isinstance(m, dict) else _turn("?", m)
        for m in messages or []
    ]


def _pair_label(row: dict, side: str) -> str:
    """One side of a pair named with its score and model, from the columns binarize writes beside the pair."""
    parts = [side]
    if isinstance(row.get(f"score_{side}"), (int, float)):
        parts.append(f"score {row[f'score_{side}']:.4g}")
    if row.get(f"{side}_model"):
        parts.append(str(row[f"{side}_model"]))
    return " · ".join(parts)


def _sample(row: Any) -> Sample:
    """The shapes the data stages write: chat rows, preference pairs, completion pools and prompts; anything else
    is shown as its JSON in one turn."""
    if isinstance(row, dict):
        if isinstance(row.get("messages"), list):
            return Sample(_turns(row["messages"]))
        if "chosen" in row and "rejected" in row:
            return Sample(
                _turns(row.get("prompt")),
                [Answer(side, _pair_label(row, side), _turns(row[side])) for side in ("chosen", "rejected")],
            )
        if isinstance(row.get("completions"), list):
            return Sample(
                _turns(row.get("prompt")),
                [
                    Answer(
                        "completion",
                        " · ".join(str(c[k]) for k in ("model", "principle") if c.get(k)) or "completion",
                        [_turn("assistant", c.get("text", ""))],
                    )
                    for c in row["completions"]
                    if isinstance(c, dict)
                ],
            )
        if isinstance(row.get("prompt"), str):
            return Sample(_turns(row["prompt"]))
    return Sample([_turn("row", row)])


def _sample_file(path: str, rel: str) -> SampleFile:
    samples, rows = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            rows += 1
            if len(samples) < SAMPLES_PER_FILE:
                try:
                    samples.append(_sample(json.loads(line)))
                except ValueError:
                    samples.append(Sample([_turn("unreadable line", line)]))
    return SampleFile(rel, rows, samples)


def _counts_line(manifest: dict) -> str:
    counts = manifest.get("counts") or {}
    flat = {k: v for k, v in counts.items() if isinstance(v, (int, float, str))}
    return ", ".join(f"{k} {v}" for k, v in list(flat.items())[:6])


def _metrics(manifest: dict) -> list[tuple[str, str]]:
    shown = {
        k: v
        for k, v in (manifest.get("metrics") or {}).items()
        if any(t in k for t in ("loss", "accurac", "margin")) and isinstance(v, (int, float))
    }
    return [(k, f"{v:.4g}") for k, v in sorted(shown.items())]


def _links(run_dir: str, d: str) -> list[Link]:
    # relative to the page, which lies in run_dir, and quoted: a stage name may hold characters a URL may not
    out = []
    for label, name in STAGE_FILES:
        path = os.path.join(d, name)
        href = quote(os.path.relpath(path, run_dir).replace(os.sep, "/")) if os.path.exists(path) else None
        out.append(Link(label, name, href))
    return out


def _stage(run_dir: str, name: str, state: str | None) -> StageView:
    d = os.path.join(run_dir, name)
    manifest = _manifest(d)
    record = manifest.get("pipeline", {})
    view = StageView(
        name=name,
        kind=record.get("kind", ""),
        status=state or ("done" if record.get("status") == "complete" else "not run"),
        counts=_counts_line(manifest),
        cost_usd=float(manifest.get("cost_usd") or 0.0),
        wall_time_s=float(record.get("wall_time_s") or manifest.get("wall_time_s") or 0.0),
        ran=bool(manifest),
        links=_links(run_dir, d),
        decontamination=read_decontamination(d, manifest),
    )
    if not manifest:
        return view
    view.metrics = _metrics(manifest)
    view.figures = [
        inline_png(os.path.join(d, f), f"{name}: {f[:-4].replace('_', ' ')}")
        for f in FIGURES
        if os.path.exists(os.path.join(d, f))
    ]
    view.sample_files = [
        _sample_file(os.path.join(d, rel), rel) for rel in SAMPLE_FILES if os.path.exists(os.path.join(d, rel))
    ]
    return view


@functools.cache
def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def write_report(run_dir: str, stage_names: list[str], title: str, states: dict[str, str] | None = None) -> str:
    states = states or {}
    stages = [_stage(run_dir, name, states.get(name)) for name in stage_names]
    evaluations = [read_evaluation(os.path.join(run_dir, name), name) for name in stage_names]
    page = _template().render(
        evaluations=[e for e in evaluations if e is not None],
        title=title,
        run_dir=os.path.abspath(run_dir),
        stages=stages,
        total_cost_usd=sum(s.cost_usd for s in stages),
        total_time_s=sum(s.wall_time_s for s in stages),
    )
    path = os.path.join(run_dir, "report.html")
    write_atomic(path, page)
    return path
