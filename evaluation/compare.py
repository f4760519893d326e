"""Evaluations of several runs side by side, and which of their differences the intervals support.

Each evaluation directory (a pipeline stage directory or run_eval's output directory holding scores.json) gives one
row per model: MT-Bench with its bootstrap interval over questions, AlpacaEval's win rate with its standard error,
Arena-Hard with its interval, the Bradley-Terry rating with its interval (relative to that run's models only) and
task scores. A difference is called supported when its interval excludes 0: MT-Bench by a paired bootstrap over
the questions both judged (seeded), AlpacaEval by the combined standard error at the stated level.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from distill_core.errors import DataError

from .figures import forest, load_scores, pyplot, save, single_judgments
from .intervals import mt_bench_intervals, paired_mt_bench_difference, win_rate_difference


@dataclass
class Evaluation:
    run: str
    stage: str
    path: str
    scores: dict
    judgments: list[dict]  # single-answer judgment rows, for the MT-Bench bootstraps

    @property
    def label(self) -> str:
        return f"{self.run}/{self.stage}"

    @property
    def models(self) -> list[str]:
        s = self.scores
        names = [*(s.get("mt_bench") or {}), *((s.get("alpaca_eval") or {}).get("models") or {}),
                 *((s.get("arena_hard") or {}).get("models") or {}),
                 *(r["model"] for r in (s.get("bradley_terry") or {}).get("ratings") or []),
                 *(m for t in (s.get("tasks") or {}).values() for m in t.get("models") or {})]  # fmt: skip
        return list(dict.fromkeys(names))


def _evaluation(path: str, run: str) -> Evaluation:
    return Evaluation(run, os.path.basename(path), path, load_scores(path), single_judgments(path))


def find_evaluations(arg: str) -> list[Evaluation]:
    """The evaluation directory ``arg``, or the stage directories of the run directory ``arg`` that hold
    scores.json, in name order."""
    path = os.path.normpath(arg)
    if os.path.isfile(os.path.join(path, "scores.json")):
        return [_evaluation(path, os.path.dirname(path) or ".")]
    if not os.path.isdir(path):
        raise DataError(f"{arg}: no such directory; give a pipeline run directory or an evaluation output directory")
    found = [_evaluation(os.path.join(path, name), path) for name in sorted(os.listdir(path))
             if os.path.isfile(os.path.join(path, name, "scores.json"))]  # fmt: skip
    if not found:
        raise DataError(
            f"{arg}: no scores.json here or in its stage directories; give a pipeline run directory with an "
            "evaluation stage, or an evaluation output directory (run_eval.py writes scores.json there)"
        )
    return found


def model_rows(evaluations: list[Evaluation], *, rounds: int, level: float, seed: int) -> list[dict]:
    """One row per evaluation and model with every metric it has (None where a benchmark lacks the model)."""
    rows = []
    for ev in evaluations:
        s = ev.scores
        intervals = mt_bench_intervals(ev.judgments, rounds=rounds, level=level, seed=seed) if ev.judgments else {}
        ratings = {r["model"]: r for r in (s.get("bradley_terry") or {}).get("ratings") or []}
        for model in ev.models:
            mt = (s.get("mt_bench") or {}).get(model, {})
            alpaca = ((s.get("alpaca_eval") or {}).get("models") or {}).get(model, {})
            arena = ((s.get("arena_hard") or {}).get("models") or {}).get(model, {})
            bt = ratings.get(model, {})
            rows.append({
                "run": ev.run, "stage": ev.stage, "model": model,
                "mt_bench": mt.get("score"), "mt_bench_lower": intervals.get(model, {}).get("lower"),
                "mt_bench_upper": intervals.get(model, {}).get("upper"), "mt_bench_failed": mt.get("failed"),
                "alpaca_win_rate": alpaca.get("win_rate"), "alpaca_standard_error": alpaca.get("standard_error"),
                "alpaca_lc_win_rate": alpaca.get("length_controlled_win_rate"),
                "arena_hard": arena.get("score"), "arena_hard_lower": arena.get("lower"),
                "arena_hard_upper": arena.get("upper"),
                "bradley_terry": bt.get("rating"), "bradley_terry_lower": bt.get("lower"),
                "bradley_terry_upper": bt.get("upper"),
                "tasks": {t: (task.get("models") or {}).get(model, {}).get("score")
                          for t, task in (s.get("tasks") or {}).items()},
            })  # fmt: skip
    return rows


def _comparisons(evaluations: list[Evaluation], pairs: list[tuple[str, str]]):
    """((evaluation, model), (evaluation, model)) to compare: each named pair wherever both appear, or else each
    model name against itself across every two evaluations that hold it."""
    if pairs:
        for a, b in pairs:
            for ev_a, ev_b in itertools.product(evaluations, repeat=2):
                if a in ev_a.models and b in ev_b.models and (ev_a is not ev_b or a != b):
                    yield (ev_a, a), (ev_b, b)
        return
    for ev_a, ev_b in itertools.combinations(evaluations, 2):
        for model in ev_a.models:
            if model in ev_b.models:
                yield (ev_a, model), (ev_b, model)


def differences(evaluations, pairs, *, rounds: int, level: float, seed: int) -> list[dict]:
    out = []
    for (ev_a, a), (ev_b, b) in _comparisons(evaluations, pairs):
        entry = {"a": f"{ev_a.label}/{a}", "b": f"{ev_b.label}/{b}", "mt_bench": None, "alpaca_eval": None}
        if any(r["model"] == a for r in ev_a.judgments) and any(r["model"] == b for r in ev_b.judgments):
            entry["mt_bench"] = paired_mt_bench_difference(ev_a.judgments, a, ev_b.judgments, b, rounds=rounds,
                                                           level=level, seed=seed)  # fmt: skip
        alpaca_a = ((ev_a.scores.get("alpaca_eval") or {}).get("models") or {}).get(a)
        alpaca_b = ((ev_b.scores.get("alpaca_eval") or {}).get("models") or {}).get(b)
        if alpaca_a and alpaca_b:
            entry["alpaca_eval"] = win_rate_difference(alpaca_a, alpaca_b, level=level)
        out.append(entry)
    return out


def _cell(value, lower=None, upper=None, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    text = format(value, spec)
    return text + (f" [{lower:{spec}}, {upper:{spec}}]" if lower is not None and upper is not None else "")


def table(rows: list[dict]) -> str:
    """The rows as aligned text: one line per run/stage/model."""
    tasks = sorted({t for r in rows for t in r["tasks"]})
    header = ["run/stage/model", "MT-Bench [interval]", "failed", "AlpacaEval ± SE", "LC", "Arena-Hard [interval]",
              "Bradley-Terry [interval]", *tasks]  # fmt: skip
    lines = [header]
    for r in rows:
        se = r["alpaca_standard_error"]
        alpaca = "-" if r["alpaca_win_rate"] is None else f"{r['alpaca_win_rate']:.2f}" + (
            f" ± {se:.2f}" if se is not None else "")  # fmt: skip
        lines.append([f"{r['run']}/{r['stage']}/{r['model']}",
                      _cell(r["mt_bench"], r["mt_bench_lower"], r["mt_bench_upper"]),
                      "-" if r["mt_bench_failed"] is None else str(r["mt_bench_failed"]), alpaca,
                      _cell(r["alpaca_lc_win_rate"]),
                      _cell(r["arena_hard"], r["arena_hard_lower"], r["arena_hard_upper"]),
                      _cell(r["bradley_terry"], r["bradley_terry_lower"], r["bradley_terry_upper"], ".1f"),
                      *(_cell(r["tasks"].get(t), spec=".4f") for t in tasks)])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def verdicts(diffs: list[dict]) -> list[str]:
    """Each difference in words, saying whether its interval supports it."""
    lines = []
    for d in diffs:
        for name, unit in (("mt_bench", "MT-Bench"), ("alpaca_eval", "AlpacaEval win rate")):
            x = d[name]
            if x is None or x["difference"] is None:
                continue
            how = (f"paired bootstrap over {x['questions']} common questions, {x['rounds']} rounds, seed {x['seed']}"
                   if name == "mt_bench" else f"combined SE {x['standard_error']:.2f}")  # fmt: skip
            said = "supported" if x["supported"] else "not supported (the interval includes 0)"
            lines.append(f"{d['a']} - {d['b']}: {unit} {x['difference']:+.2f} [{x['lower']:+.2f}, {x['upper']:+.2f}] "
                         f"({x['level']:.0%}, {how}): {said}")  # fmt: skip
    return lines


def plot_comparison(rows: list[dict], out_dir: str, level: float) -> list[str]:
    """compare_mt_bench.png, compare_win_rates.png and compare_bradley_terry.png, each where some row has a value."""
    written = []
    for name, key, xlabel in (
        ("compare_mt_bench.png", "mt_bench", f"MT-Bench score, {level:.0%} bootstrap interval over questions"),
        ("compare_win_rates.png", "alpaca_win_rate", "AlpacaEval win rate (%) ± SE"),
        ("compare_bradley_terry.png", "bradley_terry", "Bradley-Terry rating (within its own run)"),
    ):
        shown = [r for r in rows if r[key] is not None]
        if not shown:
            continue
        if key == "alpaca_win_rate":
            lowers = [r[key] - (r["alpaca_standard_error"] or 0) for r in shown]
            uppers = [r[key] + (r["alpaca_standard_error"] or 0) for r in shown]
        else:
            lowers, uppers = [r[f"{key}_lower"] for r in shown], [r[f"{key}_upper"] for r in shown]
        fig, ax = pyplot().subplots(figsize=(8, max(2.5, 0.45 * len(shown) + 1.5)), layout="constrained")
        labels = [f"{r['run']}/{r['stage']}/{r['model']}" for r in shown]
        forest(ax, labels, [r[key] for r in shown], lowers, uppers, xlabel=xlabel)
        written.append(save(fig, os.path.join(out_dir, name)))
    return written
