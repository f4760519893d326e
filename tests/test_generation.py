"""Self-Instruct and dialogue stages end to end: a real local model server, resume after kill -9, secrets, bad
input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, SHARED_DATA, assert_no_server_left, run_script, script, servers_running
from openai_fault_server import ScriptedOpenAIServer

from data_gen.rouge import RougeLFilter
from data_gen.self_instruct import SelfInstructArguments
from data_gen.self_instruct.parsing import rejection_reason

SEEDS = os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl")
SECRET = "sk-test-0123456789-do-not-leak"


def scripted_teacher(base_url: str, **extra) -> str:
    """An inline teacher mapping, passed on the command line exactly as a user would."""
    config = {
        "endpoints": [{"base_url": base_url, "model": "scripted", "api_key_env": "DISTILL_TEST_KEY"}],
        "prices": {"scripted": {"input": 2.0, "output": 6.0}},
        "max_concurrency": 8,
        "timeout_s": 1.0,
        "max_retries": 12,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.1,
        **extra,
    }
    return yaml.safe_dump(config, default_flow_style=True).strip()


def self_instruct_cmd(out: str, teacher: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        script("run_self_instruct.py"),
        "recipes/smoke/self_instruct.yaml",
        "--teacher",
        teacher,
        "--seed_tasks",
        SEEDS,
        "--output_dir",
        out,
        "--show_progress",
        "false",
        *extra,
    ]


def read_rows(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_self_instruct_and_dialogues_against_a_local_model_server(workspace):
    """Both stages through `transformers serve` hosting the tiny model, then dSFT on the dialogues."""
    si = run_script(
        self_instruct_cmd(
            "runs/si",
            "local",
            "--num_instructions",
            "6",
            "--max_rounds",
            "2",
            "--keep_truncated",
            "true",
            "--min_words",
            "1",
        ),
        cwd=workspace,
        timeout=600,
    )
    assert si.returncode == 0, si.output[-3000:]
    manifest = json.load(open(workspace / "runs/si/manifest.json"))
    sent = manifest["requests"]["teacher"]
    assert (
        sent["ok"] + sent["truncated"] == 8 + 2 * manifest["counts"]["accepted"]
    )  # 2 rounds x 4, then 2 per instruction
    assert manifest["teachers"]["teacher"]["local_server"]["model_dir"] == "runs/smoke/tiny-model"
    args = SelfInstructArguments(min_words=1)
    pool = RougeLFilter()
    pool.extend(json.loads(line)["instruction"] for line in open(SEEDS))
    for row in read_rows(workspace / "runs/si/instructions/train.jsonl"):
        assert rejection_reason(row["instruction"], args) is None
        assert pool.check_and_add(row["instruction"]).novel

    prompts = workspace / "openers.jsonl"
    questions = [json.loads(line)["turns"][0] for line in open(os.path.join(SHARED_DATA, "mt_bench_questions.jsonl"))][
        :4
    ]
    prompts.write_text("".join(json.dumps({"prompt": q, "source": "mt-bench"}) + "\n" for q in questions))
    dlg = run_script(
        [
            sys.executable,
            script("run_dialogues.py"),
            "recipes/smoke/dialogues.yaml",
            "--prompts",
            str(prompts),
            "--output_dir",
            "runs/dlg",
            "--keep_truncated",
            "true",
            "--show_progress",
            "false",
        ],
        cwd=workspace,
        timeout=600,
    )
    assert dlg.returncode == 0, dlg.output[-3000:]
    rows = read_rows(workspace / "runs/dlg/sft/train.jsonl")
    assert len(rows) == 4
    for row, question in zip(rows, questions):
        roles = [m["role"] for m in row["messages"]]
        assert row["messages"][0] == {"role": "user", "content": question}
        assert roles == ["user", "assistant"] * (len(roles) // 2) and 3 <= len(roles) // 2 <= 4
    card = (workspace / "runs/dlg/README.md").read_text()
    assert "runs/smoke/tiny-model" in card and "Prompt templates sha256" in card
    assert_no_server_left(workspace)

    sft = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/smoke/sft.yaml",
            "--dataset_mixture",
            json.dumps({"datasets": [{"id": "runs/dlg/sft", "columns": ["messages"]}]}),
            "--output_dir",
            "runs/dlg-sft",
            "--max_steps",
            "2",
            "--eval_strategy",
            "no",
            "--packing",
            "false",
        ],
        cwd=workspace,
    )
    assert sft.returncode == 0, sft.output[-3000:]


def test_kill_9_then_resume_gives_the_uninterrupted_dataset(workspace):
    # transport faults only: a "length" reply is a paid, final answer, so which attempt drew it would change the data
    with ScriptedOpenAIServer(
        latency_s=0.03,
        fault_rate=0.15,
        hang_s=2.0,
        retry_after_s=0.02,
        seed=3,
        faults=("429", "500", "timeout", "drop", "malformed"),
    ) as server:
        teacher = scripted_teacher(server.base_url)
        env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO, "DISTILL_TEST_KEY": SECRET}
        extra = ("--num_instructions", "30", "--max_rounds", "20")
        reference = subprocess.run(
            self_instruct_cmd("runs/ref", teacher, *extra),
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert reference.returncode == 0, reference.stderr[-3000:]

        proc = subprocess.Popen(
            self_instruct_cmd("runs/killed", teacher, *extra),
            cwd=workspace,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        journal = workspace / "runs/killed/journal.jsonl"
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 25:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (workspace / "runs/killed/manifest.json").exists()
        resumed = subprocess.run(
            self_instruct_cmd("runs/killed", teacher, *extra),
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        stats = server.stats
    for name in ("instructions", "prompts", "sft"):
        assert read_rows(workspace / f"runs/killed/{name}/train.jsonl") == read_rows(
            workspace / f"runs/ref/{name}/train.jsonl"
        )
    assert len(read_rows(workspace / "runs/ref/prompts/train.jsonl")) == 30
    manifest = json.load(open(workspace / "runs/killed/manifest.json"))
    assert manifest["requests"]["teacher"]["cached"] > 0, "the resumed run reused the journal"
    ref_manifest = json.load(open(workspace / "runs/ref/manifest.json"))
    assert manifest["cost_usd"] == pytest.approx(ref_manifest["cost_usd"], rel=1e-9)
    # the killed and resumed runs together paid for each request once, like the reference run alone, except
    # replies that were in flight at the kill (at most max_concurrency = 8): kill -9 loses only those
    ref_keys = {r["key"] for r in read_rows(workspace / "runs/ref/journal.jsonl") if r["status"] == "ok"}
    assert len(stats.paid) == len(ref_keys) and min(stats.paid.values()) == 2
    assert 2 * len(ref_keys) <= stats.total_paid <= 2 * len(ref_keys) + 8

    leaked = [
        str(p) for p in workspace.joinpath("runs").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert not leaked, f"the API key was written to {leaked}"
    assert SECRET not in reference.stdout + reference.stderr + resumed.stdout + resumed.stderr
    assert "DISTILL_TEST_KEY" in (workspace / "runs/ref/manifest.json").read_text(), "the env var name is recorded"


def test_max_cost_stops_cleanly_and_dry_run_sends_nothing(workspace):
    with ScriptedOpenAIServer(seed=5) as server:
        teacher = scripted_teacher(server.base_url)
        env = {"DISTILL_TEST_KEY": SECRET}
        dry = run_script(self_instruct_cmd("runs/dry", teacher, "--dry_run", "true"), cwd=workspace, env=env)
        assert dry.returncode == 0, dry.output[-2000:]
        assert "estimated total" in dry.stdout and server.stats.total_attempts == 0
        capped = run_script(
            self_instruct_cmd("runs/capped", teacher, "--num_instructions", "200", "--max_cost_usd", "0.0005"),
            cwd=workspace,
            env=env,
        )
        assert capped.returncode == 0, capped.output[-2000:]
    manifest = json.load(open(workspace / "runs/capped/manifest.json"))
    assert manifest["stopped_by_budget"] is True
    per_request = max(r.get("cost_usd", 0) for r in read_rows(workspace / "runs/capped/journal.jsonl"))
    # requests already in flight when the cap is reached finish; at most max_concurrency (8) of them
    assert 0.0005 <= manifest["cost_usd"] <= 0.0005 + 8 * per_request
    assert manifest["counts"]["accepted"] == len(read_rows(workspace / "runs/capped/prompts/train.jsonl")) > 0


@pytest.mark.parametrize(
    "teacher,fragments",
    [
        ("{endpoints: [{base_url: 'http://127.0.0.1:9/v1', model: m}]}", ["http://127.0.0.1:9/v1", "unreachable"]),
        ("gpt-5-ultra", ["teacher 'gpt-5-ultra' not found", "gpt-4"]),
        (
            "{endpoints: [{base_url: 'http://x/v1', model: m, api_key: 'sk-inline'}]}",
            ["unknown key 'api_key'", "api_key_env"],
        ),
        ("gpt-4", ["OPENAI_API_KEY"]),
    ],
)
def test_bad_teacher_gets_a_one_line_error(workspace, teacher, fragments):
    res = run_script(self_instruct_cmd("runs/bad", teacher), cwd=workspace, env={"OPENAI_API_KEY": ""})
    assert res.returncode == 2, res.output[-2000:]
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(
    "signum,code,said",
    [
        (signal.SIGINT, 130, "interrupted: partial outputs are kept"),
        (signal.SIGTERM, 143, "stopped by SIGTERM: partial outputs are kept"),
        (signal.SIGKILL, -9, None),  # no cleanup runs at all: the kernel's parent-death signal stops the server
    ],
    ids=["SIGINT", "SIGTERM", "SIGKILL"],
)
def test_a_stopped_stage_stops_the_local_server_it_started(workspace, signum, code, said):
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        self_instruct_cmd("runs/int", "local", "--num_instructions", "500", "--max_rounds", "100"),
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    journal = workspace / "runs/int/journal.jsonl"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert servers_running(str(workspace)), "the run serves the local model while it works"
    proc.send_signal(signum)  # to the stage alone, as a scheduler or a parent script sends it
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, out[-2000:]
    assert_no_server_left(workspace)
    if said:
        assert said in out and "Traceback" not in out


def test_self_instruct_filters_and_parsers():
    from data_gen.self_instruct.parsing import parse_instance, parse_numbered

    args = SelfInstructArguments()
    assert rejection_reason("Summarize this text.", args) is None
    assert rejection_reason("Hi there", args) == "too_short"
    assert rejection_reason(" ".join(["word"] * 151), args) == "too_long"
    assert rejection_reason("Draw a cat for my sister please.", args) == "blacklisted_word"
    assert rejection_reason("Describe the map of the city in detail.", args) == "blacklisted_word"
    assert rejection_reason("Describe the mapping between these two sets.", args) is None  # whole words only
    assert rejection_reason('"Quote" this sentence in French.', args) == "punctuation_start"
    assert rejection_reason("Écris un poème sur la mer.", args) == "non_ascii_start"
    assert parse_numbered("Here you go:\n9. Name three rivers.\n10) Explain tides to a child.\n") == [
        "Name three rivers.",
        "Explain tides to a child.",
    ]
    assert parse_instance("Input: 2, 3\nOutput: 5", False) == {"input": "2, 3", "output": "5"}
    assert parse_instance("Class label: positive\nInput: I loved it.", True) == {
        "input": "I loved it.",
        "output": "positive",
    }
    assert parse_instance("Output: Paris is the capital.", False) == {"input": "", "output": "Paris is the capital."}
