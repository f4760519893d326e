"""Judging and binarization against a scripted judge behind real HTTP, and logprob mode with a real tiny model."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import yaml
from conftest import SHARED_DATA, run_script, script
from openai_fault_server import ScriptedOpenAIServer

from data_gen.judge.parsing import parse_ratings

POOL = os.path.join(SHARED_DATA, "alpaca_eval_completion_pool.jsonl")
FAVOURED = "gpt4"


def pool_file(tmp, n: int, chars: int = 400) -> str:
    """The first n real prompts, each with its 4 real completions (shortened to keep prompts small)."""
    rows = []
    with open(POOL) as f:
        for line in f:
            row = json.loads(line)
            for c in row["completions"]:
                c["text"] = c["text"][:chars]
            rows.append(row)
            if len(rows) == n:
                break
    path = os.path.join(tmp, "pool.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def shown_texts(content: str) -> dict[int, str]:
    """Text number -> text, as the judge sees them."""
    blocks = re.findall(r"Text (\d+):\n(.*?)(?=\n\nText \d+:\n|\n\nRate each of)", content, re.S)
    return {int(n): body for n, body in blocks}


def aspect_of(content: str) -> str:
    for aspect, marker in (
        ("instruction_following", "Instruction following:"),
        ("honesty", "Honesty:"),
        ("truthfulness", "Truthfulness:"),
        ("helpfulness", "Helpfulness:"),
    ):
        if marker in content:
            return aspect
    raise AssertionError("no rubric in the judge prompt")


def favouring_judge(
    favoured_texts: set[str],
    *,
    malformed_first: set[str] = frozenset(),
    never: set[str] = frozenset(),
    ten_for: set[str] = frozenset(),
    na_honesty: set[str] = frozenset(),
    text_format: bool = False,
):
    """A realistic judge reply: 5 for the favoured completion, 2 for the rest; scripted misbehaviour on demand."""

    def respond(body: dict) -> str:
        first = body["messages"][0]["content"]
        texts = shown_texts(first)
        aspect = aspect_of(first)
        instruction = first.split("Instruction:\n", 1)[1].split("\n\n", 1)[0]
        reasked = len(body["messages"]) > 1
        if instruction in never or (instruction in malformed_first and not reasked):
            return "I think the first answer is best, it is very thorough and clear."
        entries = []
        for n, text in sorted(texts.items()):
            rating: object = 5 if text in favoured_texts else 2
            if text in ten_for:
                rating = 10  # the "1 read as 10" class of bug, on the judge side
            if aspect == "honesty" and instruction in na_honesty:
                rating = "N/A"
            entry = {"text": n, "rating": rating, "rationale": f"text {n} judged on {aspect}"}
            if aspect in ("truthfulness", "helpfulness"):
                entry["type"] = 2
            entries.append(entry)
        if text_format:
            return "\n".join(
                f"#### Output for Text {e['text']}\nType: {e.get('type', 'None')}\nRating: {e['rating']}\n"
                f"Rationale: {e['rationale']}"
                for e in entries
            )
        return "Here are my ratings.\n" + json.dumps({"ratings": entries})

    return respond


def judge_cmd(pool: str, out: str, base_url: str, *extra: str) -> list[str]:
    judge = yaml.safe_dump(
        {
            "endpoints": [{"base_url": base_url, "model": "scripted"}],
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "prices": {"scripted": {"input": 10.0, "output": 30.0}},
        },
        default_flow_style=True,
    ).strip()
    return [
        sys.executable,
        script("run_judge.py"),
        "recipes/smoke/judge.yaml",
        "--pool",
        pool,
        "--output_dir",
        out,
        "--mode",
        "text",
        "--judge",
        judge,
        "--show_progress",
        "false",
        *extra,
    ]


def favoured_set(pool: str) -> set[str]:
    return {c["text"] for line in open(pool) for c in json.loads(line)["completions"] if c["model"] == FAVOURED}


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("text_format", [False, True], ids=["json", "text"])
def test_favoured_completion_is_chosen_whatever_position_it_was_shown_in(workspace, text_format):
    pool = pool_file(workspace, 12)
    with ScriptedOpenAIServer(responder=favouring_judge(favoured_set(pool), text_format=text_format)) as server:
        res = run_script(judge_cmd(pool, "runs/j", server.base_url), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    pairs = read(workspace / "runs/j/prefs/train.jsonl")
    assert len(pairs) == 12 and all(p["chosen_model"] == FAVOURED for p in pairs)
    assert all(p["score_chosen"] == 5.0 and p["score_rejected"] == 2.0 for p in pairs)
    for row in read(workspace / "runs/j/judged/train.jsonl"):
        assert all(len(replies) == 1 for replies in row["judge_raw"].values()), "raw replies kept"
        assert {c["ratings"]["helpfulness"]["type"] for c in row["completions"]} == {2}
    manifest = json.load(open(workspace / "runs/j/manifest.json"))
    assert manifest["counts"]["judge_calls"] == 12 * 4, "one call per prompt and aspect"
    assert os.path.getsize(workspace / "runs/j/preference_stats.png") > 10_000


def test_shuffle_puts_the_favoured_text_at_every_position(workspace):
    from data_gen.judge.aspect_ratings import shuffled_order

    pool = [json.loads(line) for line in open(pool_file(workspace, 40))]
    positions = set()
    for row in pool:
        idx = next(i for i, c in enumerate(row["completions"]) if c["model"] == FAVOURED)
        for aspect in ("instruction_following", "honesty", "truthfulness", "helpfulness"):
            positions.add(shuffled_order(42, row["prompt"], aspect, 4).index(idx))
    assert positions == {0, 1, 2, 3}


def test_reasks_na_failures_and_the_scale_bug(workspace):
    pool = pool_file(workspace, 8)
    rows = [json.loads(line) for line in open(pool)]
    prompts = [r["prompt"] for r in rows]
    worst = {c["text"] for r in rows[4:6] for c in r["completions"] if c["model"] == "vicuna-13b"}
    judge = favouring_judge(
        favoured_set(pool),
        malformed_first=set(prompts[0:2]),
        never={prompts[2]},
        ten_for=worst,
        na_honesty={prompts[3]},
    )
    with ScriptedOpenAIServer(responder=judge) as server:
        res = run_script(judge_cmd(pool, "runs/j", server.base_url, "--max_reasks", "2"), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    judged = {r["prompt"]: r for r in read(workspace / "runs/j/judged/train.jsonl")}
    # a malformed first reply is re-asked once and then parsed; both raw replies are kept
    for p in prompts[0:2]:
        assert all(len(replies) == 2 for replies in judged[p]["judge_raw"].values())
        assert all(c["ratings"]["instruction_following"]["status"] == "ok" for c in judged[p]["completions"])
    # a judge that never answers properly: 1 + 2 re-asks kept, every rating a failure, no pair for the prompt
    assert all(len(replies) == 3 for replies in judged[prompts[2]]["judge_raw"].values())
    assert {c["ratings"][a]["status"] for c in judged[prompts[2]]["completions"] for a in c["ratings"]} == {"failed"}
    # N/A honesty is recorded as N/A, not as a number
    assert {c["ratings"]["honesty"]["status"] for c in judged[prompts[3]]["completions"]} == {"na"}
    # a rating of 10 is refused (re-asked, then a failure): that completion can never be chosen
    for p in prompts[4:6]:
        bad = next(c for c in judged[p]["completions"] if c["text"] in worst)
        assert {bad["ratings"][a]["status"] for a in bad["ratings"]} == {"failed"}
    pairs = read(workspace / "runs/j/prefs/train.jsonl")
    assert prompts[2] not in {p["prompt"][0]["content"] for p in pairs}
    assert all(p["chosen"][0]["content"] not in worst for p in pairs)
    manifest = json.load(open(workspace / "runs/j/manifest.json"))
    assert manifest["statistics"]["failure_rate"] > 0


class CuttingServer(ScriptedOpenAIServer):
    """A scripted judge whose replies to the requests ``cut`` picks end with finish_reason "length", as a reply
    stopped by max_tokens does, whatever their content."""

    def __init__(self, cut, **kwargs):
        super().__init__(**kwargs)
        self.cut = cut

    def _chat_completion(self, raw, headers=None):
        reply = super()._chat_completion(raw, headers)
        if reply.status != 200 or not self.cut(json.loads(raw)):
            return reply
        doc = json.loads(reply.body)
        doc["choices"][0]["finish_reason"] = "length"
        return reply._replace(body=json.dumps(doc).encode())


@pytest.mark.parametrize("keep_truncated", [False, True])
def test_a_verdict_cut_by_max_tokens_is_reasked_unless_keep_truncated(workspace, keep_truncated):
    pool = pool_file(workspace, 4)
    prompts = [json.loads(line)["prompt"] for line in open(pool)]
    favoured = favoured_set(pool)
    judge = favouring_judge(favoured)
    # a cut reply that reads as a whole verdict, and one the pair would follow: the favoured text rated lowest
    cut_judge = favouring_judge({c["text"] for line in open(pool) for c in json.loads(line)["completions"]} - favoured)
    cut_once, cut_always = prompts[0], prompts[1]
    seen = []

    def is_cut(body):
        instruction = body["messages"][0]["content"].split("Instruction:\n", 1)[1].split("\n\n", 1)[0]
        return instruction == cut_always or (instruction == cut_once and len(body["messages"]) == 1)

    def respond(body):
        seen.append(body)
        return (cut_judge if is_cut(body) else judge)(body)

    with CuttingServer(is_cut, responder=respond) as server:
        extra = ["--max_reasks", "1", "--keep_truncated", str(keep_truncated).lower()]
        res = run_script(judge_cmd(pool, "runs/j", server.base_url, *extra), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    judged = {r["prompt"]: r for r in read(workspace / "runs/j/judged/train.jsonl")}
    pairs = {p["prompt"][0]["content"]: p for p in read(workspace / "runs/j/prefs/train.jsonl")}
    counts = json.load(open(workspace / "runs/j/manifest.json"))["counts"]
    reasks = [b for b in seen if len(b["messages"]) > 1]
    if keep_truncated:
        # the cut verdict is read as given: no re-ask, and the favoured text loses
        assert not reasks and counts["failed_ratings"] == 0
        assert all(len(replies) == 1 for p in (cut_once, cut_always) for replies in judged[p]["judge_raw"].values())
        assert pairs[cut_once]["chosen_model"] != FAVOURED and pairs[cut_always]["chosen_model"] != FAVOURED
        return
    assert reasks and all("cut off by the length limit" in b["messages"][-1]["content"] for b in reasks)
    # cut once: re-asked, and only the complete verdict that followed is recorded
    assert all(len(replies) == 2 for replies in judged[cut_once]["judge_raw"].values())
    assert all(c["ratings"][a]["status"] == "ok" for c in judged[cut_once]["completions"] for a in c["ratings"])
    assert pairs[cut_once]["chosen_model"] == FAVOURED and pairs[cut_once]["score_chosen"] == 5.0
    # cut every time: when the re-asks run out, every rating is a failure, as for a reply that never parses
    assert all(len(replies) == 2 for replies in judged[cut_always]["judge_raw"].values())
    ratings = [c["ratings"][a] for c in judged[cut_always]["completions"] for a in c["ratings"]]
    assert {r["status"] for r in ratings} == {"failed"} and all("length limit" in r["error"] for r in ratings)
    assert cut_always not in pairs and counts["failed_ratings"] == len(ratings) == 16


def test_parse_ratings_refuses_off_scale_and_incomplete_replies():
    ok, err = parse_ratings(
        '{"ratings": [{"text": 1, "rating": 4, "rationale": "a"}, {"text": 2, "rating": "2"}]}', 2, "helpfulness"
    )
    assert err is None and ok[0]["rating"] == 4 and ok[1]["rating"] == 2
    _, err = parse_ratings('{"ratings": [{"text": 1, "rating": 10}, {"text": 2, "rating": 3}]}', 2, "helpfulness")
    assert err and "text 1 has rating 10" in err
    _, err = parse_ratings('{"ratings": [{"text": 1, "rating": 4.5}, {"text": 2, "rating": 3}]}', 2, "helpfulness")
    assert err
    _, err = parse_ratings('{"ratings": [{"text": 1, "rating": "N/A"}, {"text": 2, "rating": 3}]}', 2, "helpfulness")
    assert err, "N/A is only allowed for honesty"
    ok, err = parse_ratings('{"ratings": [{"text": 1, "rating": "N/A"}, {"text": 2, "rating": 3}]}', 2, "honesty")
    assert err is None and ok[0]["status"] == "na" and ok[0]["rating"] is None
    _, err = parse_ratings('{"ratings": [{"text": 1, "rating": 4}]}', 2, "honesty")
    assert err and "[2]" in err


def test_interrupted_judging_loses_nothing(workspace):
    pool = pool_file(workspace, 10)
    with ScriptedOpenAIServer(responder=favouring_judge(favoured_set(pool))) as server:
        capped = run_script(judge_cmd(pool, "runs/j", server.base_url, "--max_cost_usd", "0.02"), cwd=workspace)
        assert capped.returncode == 0, capped.output[-2000:]
        assert json.load(open(workspace / "runs/j/manifest.json"))["stopped_by_budget"] is True
        assert not (workspace / "runs/j/prefs/train.jsonl").exists()
        paid_first = server.stats.total_paid
        full = run_script(judge_cmd(pool, "runs/j", server.base_url), cwd=workspace)
        assert full.returncode == 0, full.output[-2000:]
        assert server.stats.total_paid == 40, "the rerun paid only for what the capped run had not judged"
        assert 0 < paid_first < 40
    assert len(read(workspace / "runs/j/prefs/train.jsonl")) == 10


def test_bad_pool_file_is_a_one_line_error(workspace):
    bad = workspace / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "completions": [{"model": "a", "text": "x"}]}) + "\n")
    res = run_script(
        [
            sys.executable,
            script("run_judge.py"),
            "recipes/smoke/judge.yaml",
            "--pool",
            str(bad),
            "--output_dir",
            "runs/bad",
        ],
        cwd=workspace,
    )
    assert res.returncode == 2 and "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bad.jsonl line 1" in errors[0] and "at least 2" in errors[0]


def test_logprob_mode_with_a_local_model_then_dpo_trains_on_the_pairs(workspace):
    pool = pool_file(workspace, 6, chars=200)
    res = run_script(
        [
            sys.executable,
            script("run_judge.py"),
            "recipes/smoke/judge.yaml",
            "--pool",
            pool,
            "--output_dir",
            "runs/lp",
            "--show_progress",
            "false",
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-3000:]
    judged = read(workspace / "runs/lp/judged/train.jsonl")
    for row in judged:
        for c in row["completions"]:
            for entry in c["ratings"].values():
                assert entry["status"] == "ok" and 1.0 <= entry["rating"] <= 5.0
                assert sum(entry["probabilities"].values()) > 0
    pairs = read(workspace / "runs/lp/prefs/train.jsonl")
    assert pairs and all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    dpo = run_script(
        [
            sys.executable,
            script("run_dpo.py"),
            "recipes/smoke/dpo.yaml",
            "--model_name_or_path",
            "runs/smoke/tiny-model",
            "--dataset_mixture",
            json.dumps({"datasets": [{"id": "runs/lp/prefs"}]}),
            "--output_dir",
            "runs/lp-dpo",
            "--max_steps",
            "2",
            "--eval_strategy",
            "no",
            "--max_length",
            "128",
        ],
        cwd=workspace,
    )
    assert dpo.returncode == 0, dpo.output[-3000:]


def test_logprob_mode_with_an_endpoint_returning_top_logprobs(workspace):
    pool = pool_file(workspace, 3, chars=100)
    favoured = favoured_set(pool)

    def respond(body):
        assert body.get("logprobs") is True and body.get("top_logprobs") == 20 and body.get("max_tokens") == 1
        text = body["messages"][0]["content"].split("Answer:\n", 1)[1].rsplit("\n\nReply with", 1)[0]
        probs = {"5": 0.7, "4": 0.3} if text in favoured else {"2": 0.5, "1": 0.25, "3": 0.25}
        top = [{"token": t, "logprob": __import__("math").log(p), "bytes": None} for t, p in probs.items()]
        top.append({"token": " the", "logprob": -9.0, "bytes": None})
        first = max(probs, key=probs.get)
        return {
            "content": first,
            "logprobs": {
                "content": [
                    {
                        "token": first,
                        "logprob": __import__("math").log(probs[first]),
                        "bytes": None,
                        "top_logprobs": top,
                    }
                ]
            },
        }

    with ScriptedOpenAIServer(responder=respond) as server:
        res = run_script(judge_cmd(pool, "runs/lpe", server.base_url, "--mode", "logprobs"), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    pairs = read(workspace / "runs/lpe/prefs/train.jsonl")
    assert len(pairs) == 3 and all(p["chosen_model"] == FAVOURED for p in pairs)
    # expected values: 5*0.7 + 4*0.3 = 4.7 for the favoured text, 2*0.5 + 1*0.25 + 3*0.25 = 2.0 for the others
    assert all(p["score_chosen"] == pytest.approx(4.7) and p["score_rejected"] == pytest.approx(2.0) for p in pairs)


def test_completion_pool_from_two_models_with_a_principle_mix(workspace):
    prompts = workspace / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Explain topic number {i} briefly.", "source": "t"}) + "\n" for i in range(10))
    )
    with (
        ScriptedOpenAIServer(fault_rate=0.2, faults=("429", "500", "drop"), retry_after_s=0.01) as a,
        ScriptedOpenAIServer(completion_tokens=12) as b,
    ):
        models = [
            yaml.safe_dump(
                {"endpoints": [{"base_url": s.base_url, "model": name}], "max_retries": 8, "backoff_base_s": 0.01},
                default_flow_style=True,
            ).strip()
            for s, name in ((a, "model-a"), (b, "model-b"))
        ]
        res = run_script(
            [
                sys.executable,
                script("run_completions.py"),
                "recipes/smoke/completions.yaml",
                "--prompts",
                str(prompts),
                "--models",
                "[" + ", ".join(models) + "]",
                "--output_dir",
                "runs/pool",
                "--principles",
                "{helpfulness: 3, honesty: 1}",
                "--show_progress",
                "false",
            ],
            cwd=workspace,
        )
        assert res.returncode == 0, res.output[-3000:]
        assert a.stats.total_paid + b.stats.total_paid == 40
    rows = read(workspace / "runs/pool/pool/train.jsonl")
    assert len(rows) == 10
    principles = []
    for row in rows:
        assert len(row["completions"]) == 4 and row["prompt_id"]
        assert {c["model"] for c in row["completions"]} <= {"model-a", "model-b"}
        assert all(c["finish_reason"] == "stop" and c["text"] for c in row["completions"])
        principles += [c["principle"] for c in row["completions"]]
    assert set(principles) == {"helpfulness", "honesty"} and principles.count("helpfulness") > principles.count(
        "honesty"
    )
    # the pool feeds the judge unchanged
    with ScriptedOpenAIServer(responder=favouring_judge(set())) as judge:
        res = run_script(judge_cmd("runs/pool/pool", "runs/pool-judged", judge.base_url), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]


def test_critique_pass_gives_an_overall_score_used_by_score_overall(workspace):
    from data_gen.judge.parsing import parse_overall

    assert parse_overall("Fine.\nOverall score: 1") == (1, None), "a 1 stays a 1"
    assert parse_overall("Overall score: 10/10") == (10, None)
    assert parse_overall("Overall score: 11")[0] is None and parse_overall("Overall score: 7.5")[0] is None
    assert parse_overall("no score here")[0] is None

    pool = pool_file(workspace, 6)
    favoured = favoured_set(pool)
    aspect_judge = favouring_judge(set())  # aspects all tied: only the critique can separate the completions

    def respond(body):
        first = body["messages"][0]["content"]
        if not first.startswith("You are a demanding reviewer"):
            return aspect_judge(body)
        text = first.split("Answer:\n", 1)[1]
        parity = sum(map(ord, text))
        if len(body["messages"]) == 1 and text not in favoured and parity % 2:
            return "Decent.\nOverall score: 7.5"  # not a whole number: re-asked
        return "Critique.\nOverall score: " + ("9" if text in favoured else "1" if parity % 3 == 0 else "4")

    with ScriptedOpenAIServer(responder=respond) as server:
        res = run_script(
            judge_cmd(
                pool, "runs/crit", server.base_url, "--critique", "true", "--score", "overall", "--strategy", "lowest"
            ),
            cwd=workspace,
        )
    assert res.returncode == 0, res.output[-3000:]
    pairs = read(workspace / "runs/crit/prefs/train.jsonl")
    assert len(pairs) == 6 and all(p["chosen_model"] == FAVOURED and p["score_chosen"] == 9.0 for p in pairs)
    judged = read(workspace / "runs/crit/judged/train.jsonl")
    scores = {c["overall_score"] for r in judged for c in r["completions"]}
    assert scores <= {9, 4, 1} and None not in scores
    assert any(len(c["critique_raw"]) == 2 for r in judged for c in r["completions"]), "a 7.5 was re-asked"


def test_prompt_templates_are_checked_against_their_contract_and_hashed(tmp_path):
    import shutil

    from data_gen.judge.templates import TEMPLATE_DIR, judge_templates, read_templates
    from distill_core.errors import UserError

    folder = tmp_path / "ultrafeedback"
    shutil.copytree(TEMPLATE_DIR, folder)
    assert read_templates(str(folder)).sha256 == judge_templates().sha256
    (folder / "rubrics" / "honesty.txt").write_text("Honesty, reworded.\n")
    assert read_templates(str(folder)).sha256 != judge_templates().sha256, "the hash covers every template file"
    critique = folder / "critique.txt"
    critique.write_text(critique.read_text().replace("{text}", "{answer}"))
    with pytest.raises(
        UserError,
        match=r"critique.txt: the template uses \{answer, instruction\} but must use exactly "
        r"\{instruction, text\}",
    ):
        read_templates(str(folder))
