"""The decontamination gate in a pipeline: a dataset holding benchmark items above max_contaminated_fraction stops
the run with one line naming the benchmark, the stage that reads its clean output never starts, and the run report
shows what was found; with continue_on_contamination the run goes on, and says so in the pipeline's output, the
stage's log, manifest and card, and the run report."""

from __future__ import annotations

import os

import yaml
from conftest import SHARED_DATA
from markupsafe import escape
from test_decontaminate import _clean_rows, _gsm8k_text, _write_jsonl
from test_pipeline import pipeline
from test_report import Page


def _gated_pipeline(tmp_path, **gate_overrides) -> str:
    """A gate over 20 clean rows and 3 GSM8K questions, and a stage reading its clean output (a second check, cheap
    where a training stage would not be)."""
    rows = _clean_rows(20) + [{"messages": [{"role": "user", "content": _gsm8k_text(i)}]} for i in range(3)]
    _write_jsonl(tmp_path / "sft.jsonl", rows)
    recipe = {
        "benchmarks": [os.path.join(SHARED_DATA, "benchmarks", "gsm8k.jsonl")],
        "max_contaminated_fraction": 0.001,
    }
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(recipe))
    check = {"kind": "decontaminate", "recipe": "gate.yaml"}
    stages = {
        "gate": {**check, "overrides": {"dataset": "sft.jsonl", **gate_overrides}},
        "downstream": {**check, "overrides": {"dataset": "{run_dir}/gate/clean"}},
    }
    (tmp_path / "gated.yaml").write_text(yaml.safe_dump({"name": "gated", "run_dir": "runs/gated", "stages": stages}))
    return "gated.yaml"


def test_the_gate_stops_the_run_naming_the_benchmark_and_the_next_stage_never_starts(tmp_path):
    res = pipeline(tmp_path, _gated_pipeline(tmp_path))
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert res.returncode == 2 and "Traceback" not in res.output, res.output[-3000:]
    assert len(errors) == 1 and "stage 'gate' failed (exit 2)" in errors[0], res.stderr[-2000:]
    assert "benchmark 'gsm8k': 3 of 1319 items (0.23%) found in the training data" in errors[0]
    run_dir = tmp_path / "runs" / "gated"
    assert not (run_dir / "downstream").exists() and "[downstream]" not in res.stdout
    assert not (run_dir / "gate" / "clean").exists() and not (run_dir / "gate" / "manifest.json").exists()
    page = (run_dir / "report.html").read_text()
    assert '<td class="failed">failed</td>' in page and "Stopped before it finished" in page
    assert "<tr><td>gsm8k</td><td>1319</td><td>3</td><td>0.23%</td><td>0.10%</td><td>3</td></tr>" in page
    assert page.count("<mark>") == 3 and not Page(page).turns, "each removed row's span, marked; no sample turns"


def test_with_continue_on_contamination_the_run_goes_on_with_the_clean_rows(tmp_path):
    res = pipeline(tmp_path, _gated_pipeline(tmp_path, continue_on_contamination=True))
    assert res.returncode == 0, res.output[-3000:]
    log = (tmp_path / "runs/gated/gate/stage.log").read_text()
    warning = "gate breached but continue_on_contamination is set: benchmark 'gsm8k': 3 of 1319 items"
    assert warning in log and f"[gate] warning: {warning}" in res.stdout, res.stdout[-2000:]
    gate = yaml.safe_load((tmp_path / "runs/gated/gate/manifest.json").read_text())
    assert len(gate["warnings"]) == 1 and warning in gate["warnings"][0]
    assert f"**Warning: {warning}" in (tmp_path / "runs/gated/gate/README.md").read_text()
    assert f'<p class="failed">Warning: {escape(warning)}' in (tmp_path / "runs/gated/report.html").read_text()
    downstream = yaml.safe_load((tmp_path / "runs/gated/downstream/manifest.json").read_text())
    assert downstream["pipeline"]["status"] == "complete" and downstream["pipeline"]["depends_on"].keys() == {"gate"}
    assert downstream["counts"]["rows"] == downstream["counts"]["kept"] == 20, "the gate's clean rows, all of them"
