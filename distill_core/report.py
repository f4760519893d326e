"""One self-contained HTML page per run: stages, counts, cost, time, samples and the figures, PNGs inlined."""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

from .records import write_atomic

FIGURES = ("training_curves.png", "preference_stats.png")
SAMPLE_FILES = ("prompts/train.jsonl", "sft/train.jsonl", "pool/train.jsonl", "prefs/train.jsonl")


def _manifest(d: str) -> dict[str, Any]:
    try:
        with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _samples(path: str, n: int = 2, width: int = 700) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) == n:
                break
            text = json.dumps(json.loads(line), ensure_ascii=False, indent=1)
            out.append(text if len(text) <= width else text[:width] + " ...")
    return out


def _rows_in(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _counts_line(manifest: dict) -> str:
    counts = manifest.get("counts") or {}
    flat = {k: v for k, v in counts.items() if isinstance(v, (int, float, str))}
    return ", ".join(f"{k} {v}" for k, v in list(flat.items())[:6])


def _img(path: str, alt: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def write_report(run_dir: str, stage_names: list[str], title: str, states: dict[str, str] | None = None) -> str:
    states = states or {}
    rows, sections = [], []
    total_cost = total_time = 0.0
    for name in stage_names:
        d = os.path.join(run_dir, name)
        manifest = _manifest(d)
        record = manifest.get("pipeline", {})
        cost = float(manifest.get("cost_usd") or 0.0)
        wall = float(record.get("wall_time_s") or manifest.get("wall_time_s") or 0.0)
        total_cost += cost
        total_time += wall
        status = states.get(name) or ("done" if record.get("status") == "complete" else "not run")
        rows.append(f"<tr><td><a href='#{name}'>{html.escape(name)}</a></td><td>{html.escape(record.get('kind', ''))}</td>"
                    f"<td class='{status.replace(' ', '-')}'>{html.escape(status)}</td><td>{html.escape(_counts_line(manifest))}</td>"
                    f"<td>${cost:.4f}</td><td>{wall:.1f} s</td></tr>")
        body = [f"<section id='{name}'><h2>{html.escape(name)}</h2>"]
        if not manifest:
            body.append("<p>Not run yet.</p>")
        else:
            metrics = manifest.get("metrics")
            if metrics:
                shown = {k: v for k, v in metrics.items() if any(t in k for t in ("loss", "accurac", "margin"))}
                body.append("<table class='kv'>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
                                                          for k, v in sorted(shown.items())) + "</table>")
            for figure in FIGURES:
                if os.path.exists(os.path.join(d, figure)):
                    body.append(_img(os.path.join(d, figure), f"{name}: {figure[:-4].replace('_', ' ')}"))
            for rel in SAMPLE_FILES:
                path = os.path.join(d, rel)
                if os.path.exists(path):
                    body.append(f"<h3>{html.escape(rel)} ({_rows_in(path)} rows): first samples</h3>")
                    body += [f"<pre>{html.escape(s)}</pre>" for s in _samples(path)]
        body.append("</section>")
        sections.append("\n".join(body))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f0f0f0; }} .done {{ color: #1a7f37; }} .skipped {{ color: #57606a; }} .not-run {{ color: #b35900; }}
pre {{ background: #f6f8fa; padding: 8px; font-size: 12px; white-space: pre-wrap; word-break: break-all; }}
img {{ max-width: 100%; border: 1px solid #ddd; }} figure {{ margin: 1rem 0; }} section {{ border-top: 2px solid #ddd; margin-top: 2rem; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Run directory <code>{html.escape(os.path.abspath(run_dir))}</code>. Total cost ${total_cost:.4f}, stage time {total_time:.1f} s.</p>
<table><tr><th>stage</th><th>kind</th><th>status</th><th>counts</th><th>cost</th><th>time</th></tr>
{''.join(rows)}</table>
{''.join(sections)}
</body></html>
"""
    path = os.path.join(run_dir, "report.html")
    write_atomic(path, page)
    return path
