"""The whole loop from one pipeline recipe: skip, resume, invalidate, the run report, and bad pipeline recipes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import SHARED_DATA, assert_no_server_left, run_script, script, servers_running, shared_benchmarks
from test_report import Page

STAGES = [
    "self_instruct",
    "dialogues",
    "decontaminate",
    "sft",
    "sft_b",
    "merge",
    "completions",
    "judge",
    "dpo",
    "eval",
]


def pipeline_recipe(workspace, name="pipeline.yaml", **stage_changes) -> str:
    """The smoke pipeline, reading the seed tasks from the shared data and writing under the workspace."""
    data = yaml.safe_load((workspace / "recipes/smoke/pipeline.yaml").read_text())
    data["stages"]["self_instruct"]["overrides"]["seed_tasks"] = os.path.join(
        SHARED_DATA, "self_instruct_seed_tasks.jsonl"
    )
    data["stages"]["decontaminate"]["overrides"]["benchmarks"] = shared_benchmarks(
        str(workspace / "recipes/smoke/decontaminate.yaml")
    )
    data["stages"]["eval"]["overrides"].update(
        questions=os.path.join(SHARED_DATA, "mt_bench_questions.jsonl"),
        reference_answers=os.path.join(SHARED_DATA, "mt_bench_reference_answers_gpt4.jsonl"),
        alpaca_eval_instructions=os.path.join(SHARED_DATA, "alpaca_eval_instructions.jsonl"),
    )
    for stage, change in stage_changes.items():
        data["stages"][stage].update(change)
    (workspace / name).write_text(yaml.safe_dump(data))
    return name


def manifests(workspace, run_dir="runs/smoke/pipeline") -> dict[str, dict]:
    out = {}
    for stage in STAGES:
        path = workspace / run_dir / stage / "manifest.json"
        out[stage] = json.loads(path.read_text()) if path.exists() else {}
    return out


def pipeline(workspace, recipe, *extra):
    return run_script([sys.executable, script("run_pipeline.py"), recipe, *extra], cwd=workspace, timeout=900)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, smoke_assets):
    """One full smoke run, shared by the tests that only read or rerun it."""
    from conftest import REPO

    root = tmp_path_factory.mktemp("pipeline")
    (root / "runs" / "smoke").mkdir(parents=True)
    os.symlink(smoke_assets / "runs" / "smoke" / "tiny-model", root / "runs" / "smoke" / "tiny-model")
    shutil.copytree(os.path.join(REPO, "recipes"), root / "recipes")
    shutil.copytree(os.path.join(REPO, "ds_configs"), root / "ds_configs")
    recipe = pipeline_recipe(root)
    res = pipeline(root, recipe)
    assert res.returncode == 0, res.output[-4000:]
    assert_no_server_left(root)
    return root, recipe, res


def test_smoke_pipeline_end_to_end(finished_run):
    root, _, res = finished_run
    records = manifests(root)
    for stage in STAGES:
        assert records[stage]["pipeline"]["status"] == "complete", stage
    assert records["dialogues"]["pipeline"]["depends_on"].keys() == {"self_instruct"}
    assert records["dpo"]["pipeline"]["depends_on"].keys() == {"sft", "judge"}
    assert records["judge"]["counts"]["pairs"] > 0 and records["sft"]["counts"]["train_examples"] > 0
    assert records["dpo"]["effective_global_batch"] == 2 * 1 * 2  # per device x accumulation x 2 ZeRO-3 processes
    assert records["decontaminate"]["counts"]["rows"] == records["decontaminate"]["counts"]["kept"] > 0
    assert records["decontaminate"]["counts"]["benchmark_ngrams"] > 1_000_000  # six benchmarks, MT-Bench, AlpacaEval
    assert records["sft"]["pipeline"]["depends_on"].keys() == {"decontaminate"}
    assert records["merge"]["pipeline"]["depends_on"].keys() == {"sft", "sft_b"}
    assert records["eval"]["pipeline"]["depends_on"].keys() == {"sft", "dpo", "merge"}
    scores = json.loads((root / "runs/smoke/pipeline/eval/scores.json").read_text())
    # every MT-Bench judgment of the four models is either a score or a counted failure: 8 questions x 2 turns
    models = ["base", "dsft", "ddpo", "merged"]
    assert {m: s["judged"] + s["failed"] for m, s in scores["mt_bench"].items()} == dict.fromkeys(models, 16)
    alpaca = scores["alpaca_eval"]
    assert alpaca["baseline"] == "base" and alpaca["annotator"] == "logprob"
    for model in ("dsft", "ddpo", "merged"):  # the tiny judge's label probabilities always give a preference
        entry = alpaca["models"][model]
        assert entry["n_total"] == 16 and entry["n_unannotated"] == 0 and 0 <= entry["win_rate"] <= 100
    assert "zero3_cpu.yaml" in " ".join(records["sft"]["pipeline"]["command"])
    for where in ("runs/smoke/pipeline/dpo", "runs/smoke/pipeline/judge", "runs/smoke/pipeline/report.html"):
        assert where in res.stdout, "the run ends by saying where its outputs are"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(root / "runs/smoke/pipeline/dpo"))


def test_rerun_skips_every_finished_stage(finished_run):
    root, recipe, _ = finished_run
    before = {s: (root / "runs/smoke/pipeline" / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    res = pipeline(root, recipe)
    assert res.returncode == 0, res.output[-3000:]
    assert all(f"[{s}] up to date: skipped" in res.stdout for s in STAGES)
    assert before == {s: (root / "runs/smoke/pipeline" / s / "manifest.json").stat().st_mtime_ns for s in STAGES}


def test_changing_one_recipe_reruns_it_and_everything_downstream(finished_run):
    root, _, _ = finished_run
    judge = yaml.safe_load((root / "recipes/smoke/judge.yaml").read_text())
    judge["strategy"] = "lowest"
    (root / "recipes/smoke/judge-lowest.yaml").write_text(yaml.safe_dump(judge))
    changed = pipeline_recipe(root, "changed.yaml", judge={"recipe": "recipes/smoke/judge-lowest.yaml"})
    before = manifests(root)
    res = pipeline(root, changed)
    assert res.returncode == 0, res.output[-3000:]
    after = manifests(root)
    rerun = {s for s in STAGES if after[s]["pipeline"]["fingerprint"] != before[s]["pipeline"]["fingerprint"]}
    assert rerun == {"judge", "dpo", "eval"}
    assert after["judge"]["recipe"]["values"]["strategy"] == "lowest"
    assert list(root.joinpath("runs/smoke/pipeline").glob("judge.stale-*")), "the old judge outputs were set aside"


def test_a_stage_stopped_midway_resumes(finished_run):
    root, recipe, _ = finished_run
    path = root / "runs/smoke/pipeline/self_instruct/manifest.json"
    record = json.loads(path.read_text())
    del record["pipeline"]  # as if the run had been killed before the stage finished
    path.write_text(json.dumps(record))
    res = pipeline(root, recipe, "--only", "self_instruct")
    assert res.returncode == 0, res.output[-3000:]
    assert "[self_instruct] resuming" in res.stdout
    assert_no_server_left(root)
    again = json.loads(path.read_text())
    sent = again["requests"]["teacher"]
    assert sent["cached"] > 0 and sent["sent"] == 0, "every request came from the journal"


def test_report_renders_in_headless_chromium_with_plots_and_every_stage(finished_run, tmp_path):
    root, _, _ = finished_run
    report = root / "runs/smoke/pipeline/report.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, "--window-size=1280,4000", f"--screenshot={shot}", f"file://{report}"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 100_000, "a page with figures, not a blank one"
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", f"file://{report}"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for stage in STAGES:
        assert f'<section id="{stage}">' in dom, stage
    # SFT and DPO curves, preference statistics; the evaluation's win rates (AlpacaEval) and judge failures
    assert dom.count('src="data:image/png;base64,') >= 5
    assert '<section id="evaluation">' in dom and "win rates with their error bars" in dom
    assert "judge failures and position bias" in dom
    assert "judge: preference stats" in dom and "sft: training curves" in dom and "dpo: training curves" in dom
    page = Page(dom)
    # prompts, Self-Instruct and dialogue rows, the completion pool and the pairs, each as turns
    assert {role for role, _ in page.turns} >= {"user", "assistant"}
    assert page.answers.count("chosen") == page.answers.count("rejected") == 2 and "completion" in page.answers
    assert sorted(page.links) == sorted(
        f"{stage}/{name}" for stage in STAGES for name in ("manifest.json", "README.md", "stage.log")
    )
    assert all((report.parent / href).is_file() for href in page.links)


@pytest.mark.parametrize(
    "change,fragment",
    [
        (
            {"stages": {"sft": {"recipe": "recipes/smoke/nope.yaml"}}},
            "stage recipe 'recipes/smoke/nope.yaml' not found",
        ),
        (
            {
                "stages": {
                    "a": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "kind": "dialogues",
                        "overrides": {"prompts": "{run_dir}/b/x"},
                    },
                    "b": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "kind": "dialogues",
                        "overrides": {"prompts": "{run_dir}/a/x"},
                    },
                }
            },
            "cycle (a -> b -> a)",
        ),
        (
            {
                "stages": {
                    "a": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "kind": "dialogues",
                        "overrides": {"prompts": "{run_dir}/b/x"},
                    },
                    "b": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "kind": "dialogues",
                        "overrides": {"prompts": "{run_dir}/c/x"},
                    },
                    "c": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "kind": "dialogues",
                        "overrides": {"prompts": "{run_dir}/a/x"},
                    },
                }
            },
            "cycle (a -> b -> c -> a)",
        ),
        (
            {
                "stages": {
                    "dialogues": {
                        "recipe": "recipes/smoke/dialogues.yaml",
                        "overrides": {"prompts": "{run_dir}/ghost/p"},
                    }
                }
            },
            "there is no stage 'ghost'",
        ),
        ({"stages": {"distill": {"recipe": "recipes/smoke/sft.yaml"}}}, "unknown stage kind 'distill'"),
    ],
)
def test_bad_pipeline_recipes_get_one_line_errors(workspace, change, fragment):
    data = {"name": "bad", "run_dir": "runs/bad", **change}
    (workspace / "bad.yaml").write_text(yaml.safe_dump(data))
    res = pipeline(workspace, "bad.yaml")
    assert res.returncode == 2 and "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], res.stderr


def test_stages_run_in_declaration_order_each_after_the_stages_it_reads(workspace, monkeypatch):
    from distill_core.pipeline import load_pipeline

    monkeypatch.chdir(workspace)
    dialogues = {"recipe": "recipes/smoke/dialogues.yaml", "kind": "dialogues"}
    stages = {
        "a": {**dialogues, "overrides": {"prompts": "{run_dir}/x/p"}},
        "b": dialogues,
        "x": dialogues,
        "y": {**dialogues, "overrides": {"prompts": "{run_dir}/b/p"}},
    }
    (workspace / "order.yaml").write_text(yaml.safe_dump({"name": "order", "run_dir": "runs/order", "stages": stages}))
    assert list(load_pipeline("order.yaml").stages) == ["x", "a", "b", "y"]


def test_run_dir_of_another_pipeline_is_refused(workspace):
    (workspace / "runs/shared").mkdir(parents=True)
    (workspace / "runs/shared/pipeline.json").write_text(json.dumps({"name": "someone-else", "recipe": "x.yaml"}))
    data = {
        "name": "mine",
        "run_dir": "runs/shared",
        "stages": {"self_instruct": {"recipe": "recipes/smoke/self_instruct.yaml"}},
    }
    (workspace / "mine.yaml").write_text(yaml.safe_dump(data))
    res = pipeline(workspace, "mine.yaml")
    assert res.returncode == 2
    assert "belongs to pipeline 'someone-else'" in res.stderr and "Traceback" not in res.output


def test_print_commands_shows_exactly_what_would_run_and_runs_nothing(workspace):
    recipe = pipeline_recipe(workspace)
    res = pipeline(workspace, recipe, "--print-commands", "--slurm", "2")
    assert res.returncode == 0, res.output[-2000:]
    lines = [line for line in res.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == len(STAGES)
    sft = next(line for line in lines if "launch.sbatch sft" in line)
    assert sft.startswith(
        "sbatch --nodes=2 slurm/launch.sbatch sft recipes/smoke/sft.yaml recipes/accelerate/zero3_cpu.yaml"
    )
    assert "--output_dir runs/smoke/pipeline/sft" in sft and "--gradient_accumulation_steps 1" in sft
    assert any(line.endswith("--pool runs/smoke/pipeline/completions/pool") for line in lines)
    assert any("run_eval.py recipes/smoke/eval.yaml --output_dir runs/smoke/pipeline/eval" in line for line in lines)
    assert not (workspace / "runs/smoke/pipeline").exists()


def test_ctrl_c_mid_stage_then_rerun_finishes_without_redoing_finished_stages(workspace):
    import signal
    import time

    from conftest import OFFLINE_ENV, REPO

    recipe = pipeline_recipe(workspace)
    cmd = [sys.executable, script("run_pipeline.py"), recipe, "--until", "dialogues"]
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = workspace / "runs/smoke/pipeline/dialogues/journal.jsonl"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.05)
    assert proc.poll() is None, "the pipeline finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert_no_server_left(workspace)
    first = json.loads((workspace / "runs/smoke/pipeline/self_instruct/manifest.json").read_text())

    res = pipeline(workspace, recipe, "--until", "dialogues")
    assert res.returncode == 0, res.output[-3000:]
    assert_no_server_left(workspace)
    assert "[self_instruct] up to date: skipped" in res.stdout and "[dialogues] resuming" in res.stdout
    assert json.loads((workspace / "runs/smoke/pipeline/self_instruct/manifest.json").read_text()) == first
    dialogues = json.loads((workspace / "runs/smoke/pipeline/dialogues/manifest.json").read_text())
    assert dialogues["pipeline"]["status"] == "complete" and dialogues["requests"]["assistant"]["cached"] > 0


def _server_answers(servers: list[str]) -> bool:
    """The local model server is up: its port (from its command line) answers a models listing."""
    import re
    import urllib.request

    for line in servers:
        port = re.search(r"--port (\d+)", line)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/v1/models", timeout=1) as reply:
                return reply.status == 200
        except (AttributeError, OSError):
            continue
    return False


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_pipeline_alone_stops_the_stage_and_its_server_then_rerun_resumes(workspace, signum, code):
    """As a scheduler or a parent script stops a run: one signal to the pipeline's PID, not to its process group."""
    import time

    from conftest import OFFLINE_ENV, REPO

    small = {
        "keep_truncated": True,
        "min_words": 1,
        "num_instructions": 4,
        "max_rounds": 2,
        "requests_per_round": 2,
        "max_tokens": 32,
        "instance_max_tokens": 16,
        "show_progress": False,
        "seed_tasks": os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl"),
    }
    data = {
        "name": "signalled",
        "run_dir": "runs/signalled",
        "stages": {"self_instruct": {"recipe": "recipes/smoke/self_instruct.yaml", "overrides": small}},
    }
    (workspace / "signalled.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        [sys.executable, script("run_pipeline.py"), "signalled.yaml"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not _server_answers(servers_running(str(workspace))):
        time.sleep(0.05)
    assert proc.poll() is None, "the pipeline finished before it could be stopped"
    os.kill(proc.pid, signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out[-2000:]
    assert_no_server_left(workspace)
    assert f"[self_instruct] stopped by {signal.Signals(signum).name}" in out and "Traceback" not in out

    res = pipeline(workspace, "signalled.yaml")
    assert res.returncode == 0, res.output[-3000:]
    assert "[self_instruct] resuming" in res.stdout
    manifest = json.loads((workspace / "runs/signalled/self_instruct/manifest.json").read_text())
    assert manifest["pipeline"]["status"] == "complete"
    assert_no_server_left(workspace)


def test_editing_an_input_file_reruns_the_stage_that_reads_it(workspace, monkeypatch):
    from distill_core.pipeline import load_pipeline

    monkeypatch.chdir(workspace)
    seeds = workspace / "seeds.jsonl"
    shutil.copy(os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl"), seeds)
    recipe = pipeline_recipe(workspace)
    data = yaml.safe_load((workspace / recipe).read_text())
    data["stages"]["self_instruct"]["overrides"]["seed_tasks"] = str(seeds)
    (workspace / recipe).write_text(yaml.safe_dump(data))
    before = load_pipeline(str(workspace / recipe))
    seeds.write_text(seeds.read_text().splitlines(keepends=True)[0])
    after = load_pipeline(str(workspace / recipe))
    changed = {n for n in before.stages if before.stages[n].fingerprint != after.stages[n].fingerprint}
    assert changed == set(STAGES), "self_instruct reads the file; every other stage is downstream of it"
