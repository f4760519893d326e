"""AlpacaEval- and Arena-Hard-style judging in the eval stage: scripted models and judges behind real HTTP, the
position order mapped back, logprob preferences, re-asks, resume, the length-controlled fit on synthetic data, the
tiny local model as an in-process logprob judge, and bad input refused before any request."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading

import numpy as np
import pytest
from conftest import SHARED_DATA, run_script, script
from openai_fault_server import ScriptedOpenAIServer
from test_eval import QUESTIONS, REFERENCES, ask_counter, judge_overlay, read

from evaluation.alpaca_eval import model_first
from evaluation.length_controlled import length_controlled

INSTRUCTIONS = os.path.join(SHARED_DATA, "alpaca_eval_instructions.jsonl")
MARK = "MARKED-OUTPUT"
SEED = 42


def alpaca_cmd(out: str, models: list[str], url: str, *extra: str, benchmarks=("alpaca_eval",)) -> list[str]:
    """Models answer from the scripted server under their own model id; the judge is the id 'scripted'."""
    entries = [
        {"teacher": {"endpoints": [{"base_url": url, "model": m}], "max_retries": 1}, "name": m} for m in models
    ]
    return [sys.executable, script("run_eval.py"), "recipes/smoke/eval.yaml", "--questions", QUESTIONS,
            "--reference_answers", REFERENCES, "--models", json.dumps(entries), "--judge", judge_overlay(url),
            "--benchmarks", json.dumps(list(benchmarks)), "--alpaca_eval_instructions", INSTRUCTIONS,
            "--alpaca_eval_baseline", INSTRUCTIONS, "--alpaca_eval_limit", "24", "--max_reasks", "1",
            "--output_dir", out, "--show_progress", "false", "--seed", str(SEED), *extra]  # fmt: skip


def section(content: str, label: str) -> str:
    match = re.search(rf"Output {label}:\n<output>\n(.*?)\n</output>", content, re.S)
    return match.group(1) if match else ""


class Scripted:
    """Models answer by their id (the 'marked' one with the marker); the judge replies with ``judge(content)``."""

    def __init__(self, judge):
        self.judge, self.sent, self.lock = judge, [], threading.Lock()

    def __call__(self, body: dict):
        with self.lock:
            self.sent.append(body)
        if body["model"] != "scripted":
            prefix = f"{MARK} " if body["model"] == "marked" else ""
            return f"{prefix}{body['model']} answers: {body['messages'][-1]['content'][:30]}"
        return self.judge(body)


def marker_judge(body: dict) -> str:
    content = body["messages"][-1]["content"]
    if MARK in section(content, "A"):
        return "A is better.\n[[A]]"
    return "B is better.\n[[B]]" if MARK in section(content, "B") else "A is better.\n[[A]]"


def test_text_judge_order_is_mapped_back_and_a_rerun_sends_nothing(workspace):
    scripted = Scripted(marker_judge)
    with ScriptedOpenAIServer(responder=scripted) as server:
        cmd = alpaca_cmd("runs/a", ["marked", "plain"], server.base_url)
        res = run_script(cmd, cwd=workspace)
        assert res.returncode == 0, res.output[-3000:]
        sent = len(scripted.sent)
        assert sent == 2 * 24 + 2 * 24  # answers, then one judgment per (model, instruction)
        again = run_script(cmd, cwd=workspace)
        assert again.returncode == 0 and len(scripted.sent) == sent  # resume pays for nothing twice
    scores = json.load(open(workspace / "runs/a/scores.json"))["alpaca_eval"]
    assert (scores["annotator"], scores["seed"], scores["instructions"]) == ("text", SEED, 24)
    assert scores["baseline"] == "text_davinci_003"
    marked, plain = scores["models"]["marked"], scores["models"]["plain"]
    # the marker wins wherever it is shown
    assert (marked["win_rate"], marked["n_wins"], marked["n_total"], marked["n_unannotated"]) == (100.0, 24, 24, 0)
    # with neither output marked the judge names position A: the plain model wins exactly where it was shown first
    shown_first = sum(model_first(SEED, "plain", str(i)) for i in range(24))
    assert 6 <= shown_first <= 18
    assert (plain["n_wins"], plain["n_wins_base"], plain["n_draws"]) == (shown_first, 24 - shown_first, 0)
    assert plain["win_rate"] == pytest.approx(100 * shown_first / 24, abs=1e-3)
    assert plain["standard_error"] > 0 and plain["avg_length"] > 0
    assert plain["length_controlled"]["method"] == "joint" and plain["length_controlled"]["note"]
    rows = read(workspace / "runs/a/judgments_alpaca_eval/train.jsonl")
    assert len(rows) == 48 and all(r["judge_replies"] and r["shown_first"] in ("model", "baseline") for r in rows)
    answers = read(workspace / "runs/a/answers/train.jsonl")
    assert {r["benchmark"] for r in answers} == {"alpaca_eval"} and len(answers) == 48


def test_logprob_judge_gives_the_continuous_preference(workspace):
    p_a, p_b = 0.6, 0.3

    def judge(body: dict):
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
        top = [{"token": "A", "logprob": math.log(p_a)}, {"token": " B", "logprob": math.log(p_b)},
               {"token": "The", "logprob": math.log(0.1)}]  # fmt: skip
        return {
            "content": "A",
            "logprobs": {"content": [{"token": "A", "logprob": math.log(p_a), "top_logprobs": top}]},
        }

    with ScriptedOpenAIServer(responder=Scripted(judge)) as server:
        cmd = alpaca_cmd("runs/a", ["plain"], server.base_url, "--alpaca_eval_annotator", "logprob")
        res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    expected = []
    for row in read(workspace / "runs/a/judgments_alpaca_eval/train.jsonl"):
        model_is_a = row["shown_first"] == "model"
        p_base = p_b if model_is_a else p_a
        assert row["preference"] == pytest.approx(2 - p_base / (p_a + p_b), abs=1e-6)
        assert model_is_a == model_first(SEED, "plain", row["question_id"])
        expected.append(1 - p_base / (p_a + p_b))
    s = json.load(open(workspace / "runs/a/scores.json"))["alpaca_eval"]["models"]["plain"]
    assert s["win_rate"] == pytest.approx(100 * np.mean(expected), abs=1e-3)
    assert s["standard_error"] == pytest.approx(100 * np.std(expected, ddof=1) / math.sqrt(24), abs=1e-3)


def test_unparsed_verdicts_are_reasked_then_counted_unannotated(workspace):
    times_asked = ask_counter()

    def judge(body: dict) -> str:
        first = body["messages"][1]["content"]
        n = times_asked(first)
        if "Broadway" in first:  # instruction 0: never a verdict
            return "Both are fine."
        if "US states get their names" in first:  # instruction 1: usable once re-asked
            return "Hmm." if n == 1 else "[[B]]"
        return "[[C]]"

    with ScriptedOpenAIServer(responder=Scripted(judge)) as server:
        res = run_script(alpaca_cmd("runs/a", ["plain"], server.base_url), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    rows = {r["question_id"]: r for r in read(workspace / "runs/a/judgments_alpaca_eval/train.jsonl")}
    assert rows["0"]["preference"] is None and "no" in rows["0"]["error"] and len(rows["0"]["judge_replies"]) == 2
    assert rows["1"]["verdict"] == "B" and len(rows["1"]["judge_replies"]) == 2
    s = json.load(open(workspace / "runs/a/scores.json"))["alpaca_eval"]["models"]["plain"]
    assert (s["n_unannotated"], s["n_total"], s["n_draws"]) == (1, 23, 22)
    assert json.load(open(workspace / "runs/a/manifest.json"))["counts"]["alpaca_eval_unannotated"] == 1


def arena_judge(body: dict) -> str:
    content = body["messages"][-1]["content"]
    a = content.split("<|The Start of Assistant A's Answer|>")[1].split("<|The End")[0]
    b = content.split("<|The Start of Assistant B's Answer|>")[1].split("<|The End")[0]
    if MARK in a:
        return "My answer... [[A>>B]]"
    return "My answer... [[B>>A]]" if MARK in b else "My answer... [[A>B]]"


def test_arena_hard_scores_a_preferred_model_near_100_with_much_better_counted_three_times(workspace):
    with ScriptedOpenAIServer(responder=Scripted(arena_judge)) as server:
        cmd = alpaca_cmd("runs/h", ["marked", "plain", "base"], server.base_url, "--arena_hard_baseline", "base",
                         "--bootstrap_rounds", "300", benchmarks=("arena_hard",))  # fmt: skip
        res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    arena = json.load(open(workspace / "runs/h/scores.json"))["arena_hard"]
    assert (arena["baseline"], arena["level"], arena["bootstrap_rounds"], arena["questions"]) == ("base", 0.95, 300, 8)
    marked = arena["models"]["marked"]
    # 8 questions x 2 games, each "much better": 48 weighted games, all won
    assert (marked["score"], marked["lower"], marked["upper"]) == (100.0, 100.0, 100.0)
    assert (marked["wins"], marked["losses"], marked["games"], marked["unjudged"]) == (48, 0, 48, 0)
    # neither shown answer marked: the judge names position A, so each question is one win and one loss
    plain = arena["models"]["plain"]
    assert (plain["score"], plain["wins"], plain["losses"], plain["ties"], plain["games"]) == (50.0, 8, 8, 0, 16)
    assert plain["lower"] < 50 < plain["upper"]
    rows = read(workspace / "runs/h/judgments_arena_hard/train.jsonl")
    assert len(rows) == 32 and {r["game"] for r in rows} == {1, 2} and all(r["baseline"] == "base" for r in rows)


def synthetic(rng, n: int, length_effect: float, skill: float, shift: float, difficulty: np.ndarray) -> list[dict]:
    base = rng.integers(500, 1500, n).astype(float)
    model = base + rng.normal(shift, 300, n)
    delta = base - model
    logit = -length_effect * np.tanh(delta / delta.std()) + skill + difficulty
    wins = rng.random(n) < 1 / (1 + np.exp(-logit))
    return [{"instruction": f"i{k}", "preference": 1.0 + w, "len_model": m, "len_base": b}
            for k, (w, m, b) in enumerate(zip(wins, model, base))]  # fmt: skip


def test_length_controlled_win_rate_removes_wins_that_come_from_length_only():
    rng = np.random.default_rng(0)
    n = 2000
    difficulty = rng.normal(0, 1, n)
    verbose = synthetic(rng, n, length_effect=3.0, skill=0.0, shift=400, difficulty=0 * difficulty)
    raw = 100 * np.mean([r["preference"] - 1 for r in verbose])
    assert raw > 75  # the long model wins mostly by its length
    lc = length_controlled({"verbose": verbose}, None, None)["verbose"]
    assert (
        lc["length_controlled_win_rate"] == pytest.approx(50, abs=4) and lc["length_controlled"]["method"] == "joint"
    )
    # with the instruction difficulties known, a skilled model of no length effect keeps its rate under LC
    skilled = synthetic(rng, n, length_effect=0.0, skill=1.0, shift=0, difficulty=difficulty)
    table = {f"i{k}": float(d) for k, d in enumerate(difficulty)}
    truth = 100 * np.mean(1 / (1 + np.exp(-(1.0 + difficulty))))
    both = length_controlled({"skilled": skilled, "verbose": verbose}, table, "d.json")
    assert both["skilled"]["length_controlled_win_rate"] == pytest.approx(truth, abs=4)
    assert both["verbose"]["length_controlled_win_rate"] == pytest.approx(50, abs=4)
    assert both["skilled"]["length_controlled"] == {
        "method": "file",
        "note": both["skilled"]["length_controlled"]["note"],
    }
    assert "d.json" in both["skilled"]["length_controlled"]["note"]
    # unannotated rows are left out; a model with none annotated gets no number, and says why not
    empty = length_controlled({"none": [dict(verbose[0], preference=None)]}, None, None)["none"]
    assert empty["length_controlled_win_rate"] is None and empty["length_controlled"]["method"] is None


def test_a_local_model_judge_scores_label_probabilities_in_process(workspace):
    cmd = [sys.executable, script("run_eval.py"), "recipes/smoke/eval.yaml", "--benchmarks", '["alpaca_eval"]',
           "--models", json.dumps([{"model_dir": "runs/smoke/tiny-model", "name": "tiny"}]), "--judge", "local",
           "--alpaca_eval_instructions", INSTRUCTIONS, "--alpaca_eval_baseline", INSTRUCTIONS,
           "--alpaca_eval_limit", "3", "--alpaca_eval_annotator", "logprob", "--alpaca_eval_max_tokens", "16",
           "--output_dir", "runs/t", "--show_progress", "false"]  # fmt: skip
    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    rows = read(workspace / "runs/t/judgments_alpaca_eval/train.jsonl")
    assert len(rows) == 3
    for row in rows:  # the tiny model spreads some probability over both letters
        p = row["probabilities"]
        p_model, p_base = (p["A"], p["B"]) if row["shown_first"] == "model" else (p["B"], p["A"])
        assert row["preference"] == pytest.approx(2 - p_base / (p_model + p_base), abs=2e-6)
    s = json.load(open(workspace / "runs/t/scores.json"))["alpaca_eval"]["models"]["tiny"]
    assert s["n_total"] == 3 and s["n_unannotated"] == 0


def test_dry_run_estimates_each_benchmark(workspace):
    cmd = alpaca_cmd("runs/d", ["marked", "base"], "http://127.0.0.1:9/v1", "--arena_hard_baseline", "base",
                     "--dry_run", "true", benchmarks=("mt_bench", "alpaca_eval", "arena_hard"))  # fmt: skip
    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-2000:]
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("judge ") else ""): line.split()
             for line in res.stdout.splitlines() if line.strip()}  # fmt: skip
    assert lines["marked"][2] == str(2 * 8 + 24 + 8)  # MT-Bench turns, AlpacaEval instructions, Arena questions
    assert lines["judge alpaca"][3] == str(2 * 24)  # both models against the baseline file
    assert lines["judge arena"][3] == str(2 * 8)  # one model against the baseline, two games each


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_instruction", "line 2 has no instruction"),
        ("baseline_missing", "no baseline output for 1 instruction(s)"),
        ("unknown_benchmark", "key 'benchmarks' expects list[one of 'mt_bench', 'alpaca_eval', 'arena_hard']"),
        ("no_baseline", "alpaca_eval needs alpaca_eval_baseline"),
        ("arena_baseline", "arena_hard_baseline 'nobody' is not among the models"),
        ("difficulty_missing", "no difficulty for 1 instruction(s)"),
    ],
)
def test_bad_alpaca_and_arena_input_is_one_line_before_any_request(workspace, case, message):
    lines = open(INSTRUCTIONS).read().splitlines()[:4]
    instructions, baseline = workspace / "instr.jsonl", workspace / "base.json"
    bad = dict(json.loads(lines[1]))
    bad.pop("instruction")
    instructions.write_text("\n".join(lines if case != "no_instruction" else [lines[0], json.dumps(bad)]) + "\n")
    records = [{"instruction": json.loads(line)["instruction"], "output": "x", "generator": "g"} for line in lines]
    baseline.write_text(json.dumps(records[:3] if case == "baseline_missing" else records))
    difficulty = workspace / "difficulty.json"
    difficulty.write_text(json.dumps({r["instruction"]: 0.5 for r in records[:3]}))
    with ScriptedOpenAIServer(responder=Scripted(marker_judge)) as server:
        cmd = alpaca_cmd("runs/b", ["plain", "base"], server.base_url, benchmarks=("alpaca_eval", "arena_hard"))
        cmd[cmd.index("--alpaca_eval_instructions") + 1] = str(instructions)
        cmd[cmd.index("--alpaca_eval_baseline") + 1] = str(baseline)
        cmd += ["--arena_hard_baseline", "nobody" if case == "arena_baseline" else "base"]
        if case == "unknown_benchmark":
            cmd[cmd.index("--benchmarks") + 1] = '["alpaca_eval", "mmlu"]'
        if case == "no_baseline":
            del cmd[cmd.index("--alpaca_eval_baseline") : cmd.index("--alpaca_eval_baseline") + 2]
        if case == "difficulty_missing":
            cmd += ["--alpaca_eval_difficulty", str(difficulty)]
        res = run_script(cmd, cwd=workspace)
        assert server.stats.requests == 0
    assert res.returncode == 2, res.output[-2000:]
    assert message in res.stderr and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr


def test_zephyr_recipe_states_the_alpaca_eval_1_protocol_and_estimates_it(workspace):
    cmd = [sys.executable, script("run_eval.py"), "recipes/zephyr-7b-beta/eval.yaml", "--questions", QUESTIONS,
           "--reference_answers", REFERENCES, "--benchmarks", '["mt_bench", "alpaca_eval"]',
           "--alpaca_eval_instructions", INSTRUCTIONS, "--alpaca_eval_baseline", INSTRUCTIONS,
           "--dry_run", "true"]  # fmt: skip
    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-2000:]
    judge = next(line.split() for line in res.stdout.splitlines() if line.startswith("judge alpaca"))
    assert judge[2:4] == ["gpt-4-0613", str(2 * 805)]  # ddpo and dsft against text-davinci-003, GPT-4 judging


def test_a_model_that_never_answers_is_listed_with_its_unanswered_count(workspace):
    failing = ScriptedOpenAIServer(fault_rate=1.0, faults=("500",))  # every completion fails
    with ScriptedOpenAIServer(responder=Scripted(marker_judge)) as server, failing:
        cmd = alpaca_cmd("runs/a", ["marked"], server.base_url, "--benchmarks", '["alpaca_eval", "arena_hard"]',
                         "--arena_hard_baseline", "marked", "--max_failure_rate", "1.0")  # fmt: skip
        models = json.loads(cmd[cmd.index("--models") + 1])
        models.append({"teacher": {"endpoints": [{"base_url": failing.base_url, "model": "silent"}], "max_retries": 0},
                       "name": "silent"})  # fmt: skip
        cmd[cmd.index("--models") + 1] = json.dumps(models)
        res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    scores = json.load(open(workspace / "runs/a/scores.json"))
    silent = scores["alpaca_eval"]["models"]["silent"]
    assert (silent["n_total"], silent["n_unanswered"], silent["win_rate"]) == (0, 24, None)
    assert scores["alpaca_eval"]["models"]["marked"]["n_unanswered"] == 0
    arena = scores["arena_hard"]["models"]["silent"]
    assert (arena["games"], arena["score"], arena["unanswered"]) == (0, None, scores["arena_hard"]["questions"])
