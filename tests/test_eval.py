"""The MT-Bench eval stage: scripted judges behind real HTTP, answers from files and from endpoints, the tiny local
model end to end, and bad input refused before any request."""

from __future__ import annotations

import json
import os
import re
import sys
import threading

import pytest
import yaml
from conftest import SHARED_DATA, run_script, script
from openai_fault_server import ScriptedOpenAIServer

QUESTIONS = os.path.join(SHARED_DATA, "mt_bench_questions.jsonl")
REFERENCES = os.path.join(SHARED_DATA, "mt_bench_reference_answers_gpt4.jsonl")
STRONG, WEAK = "STRONG-ANSWER", "weak answer"


def first_questions(per_category: int) -> list[dict]:
    rows, taken = [], {}
    for line in open(QUESTIONS):
        q = json.loads(line)
        if taken.get(q["category"], 0) < per_category:
            taken[q["category"]] = taken.get(q["category"], 0) + 1
            rows.append(q)
    return rows


def answers_files(tmp, per_category: int = 1) -> tuple[str, str]:
    """The strong model's answers in FastChat's model_answer layout, the weak model's in ours."""
    questions = first_questions(per_category)
    strong, weak = os.path.join(tmp, "strong.jsonl"), os.path.join(tmp, "weak.jsonl")
    with open(strong, "w") as f:
        for q in questions:
            turns = [f"{STRONG} {q['question_id']} turn {t}" for t in (1, 2)]
            f.write(
                json.dumps(
                    {"question_id": q["question_id"], "model_id": "s", "choices": [{"index": 0, "turns": turns}]}
                )
                + "\n"
            )
    with open(weak, "w") as f:
        for q in questions:
            answers = [f"{WEAK} {q['question_id']} turn {t}" for t in (1, 2)]
            f.write(json.dumps({"question_id": q["question_id"], "answers": answers}) + "\n")
    return strong, weak


def ask_counter():
    """A thread-safe count of how often each prompt was asked: call it with the prompt, get this ask's number."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def count(key: str) -> int:
        with lock:
            seen[key] = seen.get(key, 0) + 1
            return seen[key]

    return count


def judge_overlay(base_url: str) -> str:
    return yaml.safe_dump(
        {"endpoints": [{"base_url": base_url, "model": "scripted"}], "max_retries": 2, "backoff_base_s": 0.01},
        default_flow_style=True,
    ).strip()


def eval_cmd(out: str, models: list, judge_url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        script("run_eval.py"),
        "recipes/smoke/eval.yaml",
        "--questions",
        QUESTIONS,
        "--reference_answers",
        REFERENCES,
        "--models",
        json.dumps(models),
        "--judge",
        judge_overlay(judge_url),
        "--output_dir",
        out,
        "--show_progress",
        "false",
        *extra,
    ]


def shown(content: str, label: str) -> str:
    match = re.search(rf"\[Assistant {label}(?:'s answer|, second answer)\]\n(.*?)\n", content)
    return match.group(1) if match else ""


def model_preferring_judge(body: dict) -> str:
    """Rates the strong model's answers 9 and the weak one's 3; in pairs, prefers the strong one wherever shown."""
    content = body["messages"][-1]["content"]
    if "[[A]]" in content:  # a pairwise prompt
        return "[[A]]" if STRONG in shown(content, "A") else "[[B]]" if STRONG in shown(content, "B") else "[[C]]"
    return "Clear and correct. Rating: [[9]]" if STRONG in content else "Weak. Rating: [[3]]"  # one model shown


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_a_judge_preferring_a_model_ranks_it_first_whatever_the_position(workspace):
    strong, weak = answers_files(workspace, per_category=1)
    models = [{"answers": weak, "name": "weak"}, {"answers": strong, "name": "strong"}]
    with ScriptedOpenAIServer(responder=model_preferring_judge) as server:
        res = run_script(eval_cmd("runs/e", models, server.base_url), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    scores = json.load(open(workspace / "runs/e/scores.json"))
    assert scores["mt_bench"]["strong"]["score"] == 9 and scores["mt_bench"]["weak"]["score"] == 3
    assert scores["mt_bench"]["strong"]["judged"] == 16 and scores["mt_bench"]["strong"]["failed"] == 0
    assert set(scores["mt_bench"]["strong"]["per_category"]) == {
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"
    }  # fmt: skip
    assert scores["mt_bench"]["weak"]["per_turn"] == {"1": 3, "2": 3}
    pair = scores["pairwise"]["pairs"]["strong vs weak"]
    assert (pair["wins"], pair["losses"], pair["ties"], pair["win_rate"]) == (16, 0, 0, 1.0)
    assert scores["pairwise"]["position_disagreement_rate"] == 0
    ranking = scores["bradley_terry"]["ratings"]
    assert [r["model"] for r in ranking] == ["strong", "weak"] and ranking[0]["rank"] == 1
    # reference answers reach the judge for math, reasoning and coding only
    rows = read(workspace / "runs/e/judgments_single/train.jsonl")
    assert {r["category"] for r in rows} >= {"math", "coding"}


def test_a_judge_always_preferring_position_a_yields_only_ties(workspace):
    strong, weak = answers_files(workspace, per_category=1)
    models = [{"answers": weak, "name": "weak"}, {"answers": strong, "name": "strong"}]
    with ScriptedOpenAIServer(responder=lambda body: "A reads better. [[A]]") as server:
        res = run_script(eval_cmd("runs/e", models, server.base_url, "--grading", "pairwise"), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    scores = json.load(open(workspace / "runs/e/scores.json"))
    pair = scores["pairwise"]["pairs"]["strong vs weak"]
    assert (pair["wins"], pair["losses"], pair["ties"], pair["adjusted_win_rate"]) == (0, 0, 16, 0.5)
    assert scores["pairwise"]["position_disagreement_rate"] == 1.0
    assert "mt_bench" not in scores


def test_unusable_verdicts_are_reasked_then_counted_never_scored(workspace):
    strong, weak = answers_files(workspace, per_category=1)
    models = [{"answers": weak, "name": "weak"}, {"answers": strong, "name": "strong"}]
    times_asked = ask_counter()

    def judge(body: dict) -> str:
        first = body["messages"][1]["content"]
        n = times_asked(first)
        if f"{WEAK} 81 turn" in first:
            return "No verdict here." if n == 1 else "Rating: [[4]]"  # re-asked once, then usable
        if f"{WEAK} 91 turn" in first:
            return "Rating: [[15]]"  # off the scale, every time
        if f"{WEAK} 101 turn" in first:
            return "Rating: [[rating]]"  # never a number
        return "Rating: [[6]]"

    with ScriptedOpenAIServer(responder=judge) as server:
        res = run_script(eval_cmd("runs/e", models, server.base_url, "--grading", "single"), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    rows = {
        (r["model"], r["question_id"], r["turn"]): r for r in read(workspace / "runs/e/judgments_single/train.jsonl")
    }
    assert rows["weak", "81", 1]["rating"] == 4 and len(rows["weak", "81", 1]["judge_replies"]) == 2
    for qid, reason in (("91", "off the scale"), ("101", "no 'Rating: [[N]]' line")):
        row = rows["weak", qid, 1]
        assert row["rating"] is None and reason in row["error"]
        assert len(row["judge_replies"]) == 2  # the first reply and one re-ask (max_reasks 1), all kept
    scores = json.load(open(workspace / "runs/e/scores.json"))
    assert scores["mt_bench"]["weak"]["failed"] == 4 and scores["mt_bench"]["weak"]["judged"] == 12
    assert scores["mt_bench"]["weak"]["score"] == pytest.approx((4 * 2 + 6 * 10) / 12, abs=1e-4)
    manifest = json.load(open(workspace / "runs/e/manifest.json"))
    assert manifest["counts"]["single_failed"] == 4


def test_answers_come_from_an_endpoint_with_category_temperatures_and_turn_two_continuing(workspace):
    bodies = []
    lock = threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            bodies.append(body)
        if body["messages"][0]["role"] == "system":  # the judge
            return "[[C]]" if "[[A]]" in body["messages"][-1]["content"] else "Rating: [[5]]"
        return f"answer to turn {len([m for m in body['messages'] if m['role'] == 'user'])}"

    with ScriptedOpenAIServer(responder=respond) as server:
        models = [{"teacher": {"endpoints": [{"base_url": server.base_url, "model": "m1"}]}, "name": "m1"}]
        cmd = eval_cmd("runs/e", models, server.base_url, "--grading", "single")
        res = run_script(cmd, cwd=workspace)
        assert res.returncode == 0, res.output[-3000:]
        sent = len(bodies)
        again = run_script(cmd, cwd=workspace)  # a rerun pays for nothing twice
        assert again.returncode == 0 and len(bodies) == sent
    answers = [b for b in bodies if b["messages"][0]["role"] != "system"]
    assert len(answers) == 16
    temperatures = {}
    for body in answers:
        q = next(q for q in first_questions(1) if q["turns"][0] == body["messages"][0]["content"])
        temperatures[q["category"]] = body["temperature"]
        if len(body["messages"]) == 3:
            assert body["messages"][1] == {"role": "assistant", "content": "answer to turn 1"}
            assert body["messages"][2]["content"] == q["turns"][1]
    assert temperatures == {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1, "reasoning": 0.0,
                            "math": 0.0, "coding": 0.0, "extraction": 0.0}  # fmt: skip
    rows = read(workspace / "runs/e/answers/train.jsonl")
    assert len(rows) == 8 and all(r["answers"] == ["answer to turn 1", "answer to turn 2"] for r in rows)


def test_end_to_end_with_the_tiny_model_served_locally(workspace):
    cmd = [sys.executable, script("run_eval.py"), "recipes/smoke/eval.yaml", "--questions", QUESTIONS,
           "--reference_answers", REFERENCES, "--show_progress", "false"]  # fmt: skip
    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    manifest = json.load(open(workspace / "runs/smoke/eval/manifest.json"))
    counts = manifest["counts"]
    assert counts["answers"] == 16 and counts["single_judgments"] + counts["pairwise_judgments"] > 0
    scores = json.load(open(workspace / "runs/smoke/eval/scores.json"))
    for model in ("tiny-a", "tiny-b"):
        s = scores["mt_bench"][model]
        assert s["judged"] + s["failed"] == 16  # whatever the tiny judge manages, every judgment is accounted for
    assert manifest["failures"]["failed"] == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no answers of weak to question(s) 91"),
        ("duplicate", "question_id 81 is answered twice"),
        ("baseline", "baseline 'nobody' is not among the models"),
        ("one_model_pairwise", "needs at least two under models"),
        ("same_name", "are both named 'weak'"),
    ],
)
def test_bad_eval_input_is_one_line_before_any_request(workspace, case, message):
    strong, weak = answers_files(workspace, per_category=1)
    lines = open(weak).read().splitlines()
    if case == "missing":
        open(weak, "w").write("\n".join(lines[:1] + lines[2:]) + "\n")
    if case == "duplicate":
        open(weak, "w").write("\n".join(lines + lines[:1]) + "\n")
    models = [{"answers": weak, "name": "weak"}, {"answers": strong, "name": "strong"}]
    extra = []
    if case == "baseline":
        extra = ["--baseline", "nobody", "--grading", "pairwise"]
    if case == "one_model_pairwise":
        models, extra = models[:1], ["--grading", "pairwise"]
    if case == "same_name":
        models[1]["name"] = "weak"
    with ScriptedOpenAIServer(responder=lambda body: "Rating: [[5]]") as server:
        res = run_script(eval_cmd("runs/e", models, server.base_url, *extra), cwd=workspace)
        assert server.stats.requests == 0
    assert res.returncode == 2, res.output[-2000:]
    assert message in res.stderr and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ["smoke/eval.yaml", "zephyr-7b-beta/eval.yaml"])
def test_eval_recipes_validate_and_estimate_their_cost_without_sending(workspace, name):
    cmd = [sys.executable, script("run_eval.py"), f"recipes/{name}", "--questions", QUESTIONS,
           "--reference_answers", REFERENCES, "--dry_run", "true"]  # fmt: skip
    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-2000:]
    assert "estimated total" in res.stdout and "nothing sent" in res.stdout
    assert not os.path.exists(workspace / "runs" / "smoke" / "eval" / "journal.jsonl")
    if name.startswith("zephyr"):
        judge = next(line for line in res.stdout.splitlines() if line.startswith("judge"))
        assert judge.split()[1:3] == ["gpt-4-0613", "320"]  # 2 models x 80 questions x 2 turns
