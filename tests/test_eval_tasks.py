"""Task metrics (LoRA Land style): each metric on hand-made cases, ROUGE-L against hand-computed values and
rouge_score, task specs refused in one line, answers from a scripted endpoint over real HTTP scored with every
example counted (a rerun sends nothing), the example tasks over the shared benchmark files, and the tiny local model
end to end."""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import threading

import pytest
from conftest import REPO, SHARED_DATA
from openai_fault_server import ScriptedOpenAIServer

from data_gen.endpoints import load_teacher
from data_gen.session import GenerationSession
from distill_core.errors import DataError, RecipeError
from evaluation.arguments import ModelUnderTest
from evaluation.task_metrics import accuracy, exact_match, final_number, numeric, rouge_l, score_rows, task_scores
from evaluation.tasks import (
    build_task_requests,
    generate_task_answers,
    load_task_rows,
    parse_task,
    parse_tasks,
)

LETTERS = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    "response, target, expected",
    [
        ("0 or 1", "1", 0.0),  # no credit for containing the target
        ("1", "1", 1.0),
        ("  The Answer. ", "answer", 1.0),  # case, punctuation, article, whitespace
        ("a  cat", "the cat", 1.0),
        ("cats", "cat", 0.0),
        ("an apple pie", "apple", 0.0),
        ("Straße", "STRASSE", 1.0),  # casefold, not just lower
        ("Ｐａｒｉｓ", "paris", 1.0),  # full-width letters under NFKC
        ("«Café»", "café", 1.0),  # non-ASCII punctuation
        ("東京。", "東京", 1.0),
        ("!!!", "?", 0.0),  # nothing left of the response is no answer
    ],
)
def test_exact_match_is_equality_after_normalisation(response, target, expected):
    assert exact_match(response, target) == expected


@pytest.mark.parametrize(
    "response, target, labels, expected",
    [
        ("(B) because the others are wrong", "B", LETTERS, 1.0),
        ("**C**.", "C", LETTERS, 1.0),
        ("The answer is d", "D", LETTERS, 1.0),  # the first token that is a label
        ("I pick B, not C", "C", LETTERS, 0.0),
        ("0 or 1", "1", ["0", "1"], 0.0),  # the first label named is the answer
        ("0 or 1", "1", None, 0.0),
        ("not entailment, clearly", "not entailment", ["entailment", "not entailment"], 1.0),  # longest label wins
        ("entailment", "not entailment", ["entailment", "not entailment"], 0.0),
        ("Positivo!", "positivo", ["positivo", "negativo"], 1.0),
        ("Yes, it is.", "yes", None, 1.0),  # without labels: the response starts with the target
        ("Perhaps yes", "yes", None, 0.0),
        ("none of them", "B", LETTERS, 0.0),
    ],
)
def test_accuracy_reads_the_first_label_of_the_response(response, target, labels, expected):
    assert accuracy(response, target, labels) == expected


@pytest.mark.parametrize(
    "response, target, expected",
    [
        ("She makes $1,234.50 a day.", "1234.5", 1.0),
        ("$1,234.50", "#### 1,234.5", 1.0),
        ("So 9 * 2 = 18.\n#### 72", "72", 1.0),  # "####" wins over the last number
        ("#### 72 (checked in 3 steps)", "#### 72", 1.0),
        ("72 or maybe 73", "72", 0.0),  # the last number is the answer
        ("18.00", "Janet sells 9 eggs.\n#### 18", 1.0),  # compared as numbers
        ("1,2", "12", 0.0),  # a comma joins only groups of three digits
        ("It drops to -3 degrees", "-3", 1.0),
        ("答えは３５です", "35", 1.0),  # full-width digits
        ("I cannot tell", "5", 0.0),
    ],
)
def test_numeric_compares_the_final_numbers(response, target, expected):
    assert numeric(response, target) == expected


def test_final_number_of_every_gsm8k_solution_is_its_answer_line():
    with open(os.path.join(SHARED_DATA, "benchmarks", "gsm8k.jsonl")) as f:
        answers = [json.loads(line)["fields"]["answer"] for line in f]
    for answer in answers:
        line = answer.rsplit("####", 1)[1]
        assert final_number(answer) == float(line.replace(",", "")), answer


@pytest.mark.parametrize("metric", [exact_match, accuracy, rouge_l, numeric])
@pytest.mark.parametrize("response", [None, "", "  \n\t"])
def test_an_empty_response_scores_zero_under_every_metric(metric, response):
    target = {numeric: "#### 7"}.get(metric, "7")
    assert metric("7", target) == 1.0  # the same target is reachable
    assert metric(response, target) == 0.0


def test_rouge_l_matches_hand_computed_f1_and_rouge_score():
    from rouge_score import rouge_scorer

    # LCS "quick fox" = 2 tokens: precision 2/2, recall 2/5, F1 = 2 * 1 * 0.4 / 1.4 = 4/7
    assert rouge_l("Quick, fox!", "the quick brown fox jumps") == pytest.approx(4 / 7)
    # LCS "the cat on mat" = 4 of 6 on both sides: F1 = 2/3
    assert rouge_l("the cat lay on a mat", "The cat sat on the mat.") == pytest.approx(2 / 3)
    assert rouge_l("dogs bark", "the cat sat") == 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for response, target in [("Quick, fox!", "the quick brown fox jumps"), ("a b c a b", "b a c b a c")]:
        assert rouge_l(response, target) == scorer.score(target, response)["rougeL"].fmeasure
    # non-ASCII words stay whole (rouge_score's tokenizer would keep only "caf" and "cr"): LCS 2, P 1, R 2/3
    assert rouge_l("café crème", "Café au crème") == pytest.approx(0.8)


def write_jsonl(path, rows) -> str:
    with open(path, "w") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return str(path)


def numeric_task(dataset: str, **extra) -> dict:
    return {
        "name": "sums",
        "dataset": dataset,
        "template": "Question: {question}\nAnswer:",
        "target": "answer",
        "metric": "numeric",
        **extra,
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metric": "exact_mach"}, "(task 'sums'): metric 'exact_mach' is unknown; did you mean 'exact_match'?"),
        ({"limit": 0}, "(task 'sums'): key 'limit' must be >= 1, got 0; set limit to the rows to use"),
        ({"templte": "x"}, "(task 'sums'): unknown key 'templte'; did you mean 'template'?"),
        ({"target": None}, "(task 'sums'): required key 'target' is missing"),  # None: the key removed
        ({"limit": "many"}, "(task 'sums'): key 'limit' expects int, got 'many'"),
        ({"labels": ["1", "2"]}, "(task 'sums'): labels is read by metric accuracy only"),
        ({"template": "{fields.question}"}, "template field '{fields.question}' must name a column"),
        ({"template": "Q: {}"}, "template field '{}' must name a column"),
        ({"template": "Q: {question"}, "template is not a valid format string"),
        ({"template": "no fields"}, "template names no column"),
    ],
)
def test_a_bad_task_spec_is_one_line_naming_the_task_and_the_field(tmp_path, change, message):
    spec = {k: v for k, v in {**numeric_task("x.jsonl"), **change}.items() if v is not None}
    with pytest.raises(RecipeError) as info:
        parse_tasks([spec], "eval.yaml")
    assert str(info.value).startswith("eval.yaml: tasks[0]") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_task_lists_refuse_duplicates_and_unknown_task_names():
    spec = numeric_task("x.jsonl")
    with pytest.raises(RecipeError, match="tasks\\[0\\] and tasks\\[1\\] are both named 'sums'"):
        parse_tasks([spec, dict(spec)], "eval.yaml")
    with pytest.raises(RecipeError, match="task 'gsm8kk' not found .* use one of \\['arc_challenge', 'gsm8k'\\]"):
        parse_tasks(["gsm8kk"], "eval.yaml")


@pytest.mark.parametrize(
    "rows, change, message",
    [
        ([{"question": "1+1", "answer": "2"}], {"template": "{questoin}"},
         "lacks column 'questoin' named by template; did you mean 'question'?"),
        ([{"question": "1+1", "answer": "2"}], {"target": "answr"}, "lacks column 'answr' named by target"),
        ([], {}, "is empty; point dataset/split at the held-out examples"),
        ([{"question": "1+1", "answer": None}], {}, "row 0: target 'answer' is None, not a text or a number"),
        ([{"question": "q", "answer": "maybe"}], {"metric": "accuracy", "labels": ["yes", "no"]},
         "row 0: target 'maybe' is not among labels ['yes', 'no']"),
        ([{"question": "q", "answer": 5}], {"metric": "accuracy", "labels": ["yes", "no"]},
         "row 0: target index 5 is outside labels ['yes', 'no']"),
        ([{"question": {"a": 1}, "answer": "1"}], {"template": "{question[b]}"}, "row 0 does not fill the template"),
    ],
)  # fmt: skip
def test_a_dataset_that_does_not_fit_the_task_is_one_line_before_any_request(tmp_path, rows, change, message):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, rows)
    task = parse_task(numeric_task(str(path), **change), "eval.yaml")
    with pytest.raises(DataError) as info:
        load_task_rows(task)
    assert str(info.value).startswith("task 'sums'") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_without_rows_or_a_missing_split_is_one_line(tmp_path):
    import datasets

    (tmp_path / "header.csv").write_text("question,answer\n")
    task = parse_task(numeric_task(str(tmp_path / "header.csv")), "eval.yaml")
    with pytest.raises(DataError, match="^task 'sums': dataset '.*header.csv' split 'test' is empty; point dataset/"):
        load_task_rows(task)
    saved = str(tmp_path / "saved")
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{"question": "q", "answer": "1"}])}).save_to_disk(saved)
    assert load_task_rows(parse_task(numeric_task(saved), "eval.yaml"))[0]["target"] == "1"
    with pytest.raises(DataError, match="^task 'sums': dataset '.*saved' has no split 'validation'"):
        load_task_rows(parse_task(numeric_task(saved, split="validation"), "eval.yaml"))


def test_rows_are_the_first_limit_examples_with_prompts_rendered_and_targets_read(tmp_path):
    rows = [{"q": f"item {i}", "choices": ["red", "blue", "green"], "gold": i % 3} for i in range(6)]
    task = parse_task(
        {
            "name": "colours",
            "dataset": write_jsonl(tmp_path / "c.jsonl", rows),
            "template": "{q}\n{choices:choices}",
            "target": "gold",
            "metric": "accuracy",
            "labels": ["X", "Y", "Z"],
            "limit": 4,
            "system": "Reply with one letter.",
        },
        "eval.yaml",
    )
    examples = load_task_rows(task)
    assert [e["index"] for e in examples] == [0, 1, 2, 3]
    assert examples[1] == {"index": 1, "prompt": "item 1\nX. red\nY. blue\nZ. green", "target": "Y"}
    requests = build_task_requests(task, examples, seed=3)
    assert requests[1].messages == [
        {"role": "system", "content": "Reply with one letter."},
        {"role": "user", "content": "item 1\nX. red\nY. blue\nZ. green"},
    ]
    assert requests[1].params["temperature"] == 0.0 and requests[1].params["max_tokens"] == 64
    assert len({r.params["seed"] for r in requests}) == 4  # one seed per example, stable across runs


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "recipes", "tasks", "*.yaml"))), ids=os.path.basename
)
def test_example_tasks_load_over_the_shared_benchmarks(path, monkeypatch):
    monkeypatch.chdir(REPO)  # dataset paths are relative to the repository root, like every recipe's
    [task] = parse_tasks([path], "eval.yaml")
    examples = load_task_rows(task)
    assert len(examples) == task.limit == 1000
    if task.metric == "numeric":
        assert all(final_number(e["target"]) is not None for e in examples)
    if task.labels:
        assert {e["target"] for e in examples} <= set(task.labels)
        assert all("\nA. " in e["prompt"] for e in examples)


def session(tmp_path, models: list[ModelUnderTest]) -> GenerationSession:
    """The stage's session for the models under test: role model{i} for models[i], as the eval stage names them."""
    roles = {f"model{i}": m.teacher for i, m in enumerate(models)}
    return GenerationSession(str(tmp_path / "out"), roles, max_cost_usd=None, seed=1, show_progress=False)


def scripted_models(server, names) -> list[ModelUnderTest]:
    return [
        ModelUnderTest(name, load_teacher({"endpoints": [{"base_url": server.base_url, "model": name}]}, name))
        for name in names
    ]


def test_answers_over_http_are_scored_with_every_example_counted_and_a_rerun_sends_nothing(tmp_path):
    questions = [{"question": f"{i} + {i}", "answer": f"Add them.\n#### {2 * i}"} for i in range(5)]
    data = write_jsonl(tmp_path / "sums.jsonl", questions)
    labelled = write_jsonl(tmp_path / "yn.jsonl", [{"text": f"claim {i}", "label": i % 2} for i in range(4)])
    tasks = parse_tasks(
        [
            numeric_task(data, max_tokens=32, system="Show your work."),
            {"name": "claims", "dataset": labelled, "template": "{text}", "target": "label", "metric": "accuracy",
             "labels": ["false", "true"]},
        ],
        "eval.yaml",
    )  # fmt: skip
    # strong: sums 0-2 right, 3 wrong, 4 empty; claims all right. weak: every reply empty.
    bodies, lock = [], threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            bodies.append(body)
        prompt = body["messages"][-1]["content"]
        if body["model"] == "weak":
            return ""
        if prompt.startswith("claim"):
            return ["False.", "True, since..."][int(prompt.split()[1]) % 2]
        i = int(prompt.split()[1])
        return {3: "#### 7", 4: "  "}.get(i, f"{i} + {i} = {2 * i}")

    with ScriptedOpenAIServer(responder=respond) as server:
        models = scripted_models(server, ["strong", "weak"])
        with session(tmp_path, models) as gen:
            rows = generate_task_answers(gen, models, tasks, seed=42)
        sent = len(bodies)
        with session(tmp_path, models) as gen:
            again = generate_task_answers(gen, models, tasks, seed=42)
    assert sent == 2 * (5 + 4) and len(bodies) == sent  # a rerun is served from the journal
    assert again == rows
    sums = [b for b in bodies if b["messages"][-1]["content"].startswith("Question:")]
    assert all(b["messages"][0] == {"role": "system", "content": "Show your work."} for b in sums)
    assert {(b["temperature"], b["max_tokens"]) for b in sums} == {(0.0, 32)}
    assert len(rows) == 18 and set(rows[0]) == {"model", "task", "index", "prompt", "target", "response",
                                                 "finish_reason"}  # fmt: skip
    scored = score_rows(rows, tasks)
    assert [r["score"] for r in scored if r["model"] == "strong" and r["task"] == "sums"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    scores = task_scores(rows, tasks)
    assert scores["sums"]["metric"] == "numeric" and scores["sums"]["n"] == 5
    strong = scores["sums"]["models"]["strong"]
    # scores 1, 1, 1, 0, 0: mean 0.6, sample variance 0.3
    assert strong == {"score": 60.0, "n": 5, "empty": 1, "standard_error": round(100 * math.sqrt(0.3 / 5), 4)}
    assert scores["sums"]["models"]["weak"] == {"score": 0.0, "n": 5, "empty": 5, "standard_error": 0.0}
    assert scores["claims"]["models"]["strong"] == {"score": 100.0, "n": 4, "empty": 0, "standard_error": 0.0}
    assert scores["claims"]["models"]["weak"]["n"] == 4 and scores["claims"]["models"]["weak"]["empty"] == 4


@pytest.mark.parametrize("keep_truncated", [True, False])
def test_a_reply_cut_by_max_tokens_is_kept_or_counted_empty_as_asked(tmp_path, keep_truncated):
    data = write_jsonl(
        tmp_path / "sums.jsonl", [{"question": "1 + 1", "answer": "2"}, {"question": "2", "answer": "2"}]
    )
    tasks = parse_tasks([numeric_task(data)], "eval.yaml")
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("length",)) as server:
        models = scripted_models(server, ["m"])
        with session(tmp_path, models) as gen:
            rows = generate_task_answers(gen, models, tasks, seed=1, keep_truncated=keep_truncated)
    assert [r["finish_reason"] for r in rows] == ["length", "length"]
    assert all((r["response"] is not None) == keep_truncated for r in rows)
    assert task_scores(rows, tasks)["sums"]["models"]["m"]["empty"] == (0 if keep_truncated else 2)


def test_the_tiny_local_model_answers_every_example(smoke_assets, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    [task] = parse_tasks([{**parse_task("gsm8k", "t").__dict__, "limit": 3, "max_tokens": 8}], "eval.yaml")
    model_dir = str(smoke_assets / "runs" / "smoke" / "tiny-model")
    models = [ModelUnderTest("tiny", load_teacher({"local_server": {"model_dir": model_dir}}, "tiny"))]
    with session(tmp_path, models) as gen:
        rows = generate_task_answers(gen, models, [task], seed=42)
        failed = gen.stats()["requests"]["model0"]["failed"]
    assert failed == 0 and len(rows) == 3 and [r["index"] for r in rows] == [0, 1, 2]
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)  # every example was answered
    summary = task_scores(rows, [task])["gsm8k"]
    tiny = summary["models"]["tiny"]
    assert summary["n"] == 3 and tiny["n"] == 3  # whatever the tiny model writes, every example is counted
    assert tiny["empty"] == sum(1 for r in rows if not (r["response"] or "").strip())
    assert 0.0 <= tiny["score"] <= 100.0


def test_the_eval_stage_runs_tasks_alone_scores_and_draws_them_and_asks_no_judge(workspace):
    from conftest import run_script, script

    data = write_jsonl(
        workspace / "sums.jsonl", [{"question": f"{i} + {i}", "answer": f"#### {2 * i}"} for i in range(6)]
    )
    bodies, lock = [], threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            bodies.append(body)
        i = int(body["messages"][-1]["content"].split()[1])
        return f"#### {2 * i}" if body["model"] == "strong" or i < 2 else ""

    with ScriptedOpenAIServer(responder=respond) as server:
        models = [{"teacher": {"endpoints": [{"base_url": server.base_url, "model": m}]}, "name": m}
                  for m in ("strong", "weak")]  # fmt: skip
        cmd = [sys.executable, script("run_eval.py"), "recipes/smoke/eval.yaml", "--benchmarks", "[]",
               "--tasks", json.dumps([numeric_task(data)]), "--models", json.dumps(models), "--judge",
               json.dumps({"endpoints": [{"base_url": server.base_url, "model": "judge"}]}), "--output_dir",
               "runs/tasks", "--show_progress", "false"]  # fmt: skip
        res = run_script(cmd, cwd=workspace)
        assert res.returncode == 0, res.output[-3000:]
        sent = len(bodies)
        assert run_script(cmd, cwd=workspace).returncode == 0
    assert sent == 12 and len(bodies) == sent  # two models x six examples, no judge; the rerun sends nothing
    out = workspace / "runs/tasks"
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"tasks"}
    assert scores["tasks"]["sums"]["models"]["strong"]["score"] == 100.0
    weak = scores["tasks"]["sums"]["models"]["weak"]
    assert (weak["score"], weak["n"], weak["empty"]) == (round(100 * 2 / 6, 4), 6, 4)
    rows = [json.loads(line) for line in (out / "task_answers/train.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and sorted({r["score"] for r in rows}) == [0.0, 1.0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["counts"]["task_answers"], manifest["counts"]["task_empty"]) == (12, 4)
    assert (out / "eval_tasks.png").stat().st_size > 0
