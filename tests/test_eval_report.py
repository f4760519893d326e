"""The evaluation's figures, its part of the run report, FastChat judgment files and the comparison of runs, all on
evaluation directories built from files: scores computed by the evaluation's own functions from judgment rows, and
the benchmarks other stages add (AlpacaEval, Arena-Hard, tasks) written by hand in their documented shape."""

from __future__ import annotations

import json
import os
import random
import sys
from html.parser import HTMLParser

import pytest
from conftest import run_script, script
from test_eval import QUESTIONS, first_questions

from distill_core.report import TURN_CHARS, write_report
from evaluation.bradley_terry import count_battles, rank_models
from evaluation.figures import write_eval_figures
from evaluation.intervals import mt_bench_interval, paired_mt_bench_difference
from evaluation.scores import mt_bench_scores, pairwise_battles, pairwise_summary

MARKUP = "<script>document.title = 'ran'</script>"


def single_rows(ratings: dict[str, tuple[float, float]], questions: list[dict], seed: int, fail_every: int = 0):
    """Judgment rows: each model's ratings drawn uniformly from its (low, high) range, rounded to whole points;
    every ``fail_every``-th judgment failed (rating None)."""
    rng = random.Random(seed)
    rows, n = [], 0
    for model, (low, high) in ratings.items():
        for q in questions:
            for turn in (1, 2):
                n += 1
                failed = fail_every and n % fail_every == 0
                rows.append({"model": model, "question_id": str(q["question_id"]), "category": q["category"],
                             "turn": turn, "rating": None if failed else float(round(rng.uniform(low, high))),
                             "error": "no rating" if failed else None, "judge_replies": []})  # fmt: skip
    return rows


def pairwise_rows(questions: list[dict]) -> list[dict]:
    """strong beats weak on most turns; the two orders disagree on every fifth."""
    rows = []
    for i, q in enumerate(questions):
        for turn in (1, 2):
            second = "B" if (i + turn) % 5 else "A"
            rows.append({"model_1": "strong", "model_2": "weak", "question_id": str(q["question_id"]),
                         "category": q["category"], "turn": turn, "verdict_first": "A",
                         "verdict_second": second})  # fmt: skip
    rows[-1]["verdict_first"] = None  # one pair the judge never settled
    return rows


OTHER_BENCHMARKS = {
    "alpaca_eval": {
        "baseline": "text-davinci-003",
        "annotator": "scripted",
        "seed": 0,
        "instructions": 805,
        "models": {
            "strong": {
                "win_rate": 81.2,
                "standard_error": 1.4,
                "n_wins": 650,
                "n_wins_base": 140,
                "n_draws": 10,
                "n_total": 800,
                "n_unannotated": 5,
                "avg_length": 1400,
                "length_controlled_win_rate": 70.1,
                "length_controlled": {"method": "logistic", "note": "fitted here"},
            },  # fmt: skip
            "weak": {
                "win_rate": 41.0,
                "standard_error": 1.7,
                "n_wins": 320,
                "n_wins_base": 470,
                "n_draws": 15,
                "n_total": 805,
                "n_unannotated": 0,
                "avg_length": 900,
                "length_controlled_win_rate": None,
                "length_controlled": {"method": None, "note": "custom instructions have no difficulty"},
            },  # fmt: skip
        },
    },
    "arena_hard": {
        "baseline": "gpt-4-0314",
        "level": 0.9,
        "bootstrap_rounds": 100,
        "questions": 500,
        "models": {
            "strong": {
                "score": 35.5,
                "lower": 32.0,
                "upper": 39.1,
                "wins": 300,
                "losses": 600,
                "ties": 90,
                "unjudged": 10,
                "games": 1000,
            },  # fmt: skip
            "weak": {
                "score": 8.25,
                "lower": 6.5,
                "upper": 10.0,
                "wins": 60,
                "losses": 900,
                "ties": 35,
                "unjudged": 5,
                "games": 1000,
            },  # fmt: skip
        },
    },
    "tasks": {
        "gsm8k": {
            "metric": "exact_match",
            "n": 100,
            "models": {
                "strong": {"score": 0.42, "n": 100, "empty": 3, "standard_error": 0.049},
                "weak": {"score": 0.11, "n": 100, "empty": 20, "standard_error": 0.031},
            },
        },  # fmt: skip
    },
}


def write_eval_dir(d, ratings: dict[str, tuple[float, float]], *, seed: int = 0, others: bool = True,
                   fail_every: int = 7, published: dict | None = None) -> dict:  # fmt: skip
    """An evaluation directory as run_eval writes it: answers, single (and, for strong vs weak, pairwise)
    judgments, and scores.json computed from them by the evaluation's own functions."""
    questions = first_questions(2)
    single = single_rows(ratings, questions, seed, fail_every)
    datasets = {
        "answers": [
            {
                "model": m,
                "question_id": str(q["question_id"]),
                "category": q["category"],
                "turns": q["turns"],
                "answers": [f"{m} answers {q['question_id']}: {MARKUP}" + "y" * 1200 * (m == "strong"), "2nd"],
                "finish_reasons": ["stop", "stop"],
            }
            for q in questions
            for m in ratings
        ],  # fmt: skip
        "judgments_single": single,
    }
    scores = {"mt_bench": mt_bench_scores(single)}
    if set(ratings) == {"strong", "weak"}:
        datasets["judgments_pairwise"] = pairwise_rows(questions)
        scores["pairwise"] = pairwise_summary(datasets["judgments_pairwise"])
        ranking = rank_models(count_battles(pairwise_battles(datasets["judgments_pairwise"])), rounds=100, l2=0.01)
        scores["bradley_terry"] = {"ratings": ranking.as_rows(), "level": 0.95, "bootstrap_rounds": 100}
    if others:
        scores |= OTHER_BENCHMARKS
    if published:
        scores["published"] = published
    for name, rows in datasets.items():
        os.makedirs(os.path.join(d, name), exist_ok=True)
        with open(os.path.join(d, name, "train.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(d, "scores.json"), "w") as f:
        json.dump(scores, f)
    return scores


EVAL_FIGURES = ["eval_mt_bench.png", "eval_win_rates.png", "eval_bradley_terry.png", "eval_judge_failures.png",
                "eval_tasks.png"]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG, f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_figures_for_every_benchmark(tmp_path):
    write_eval_dir(tmp_path, {"strong": (7, 10), "weak": (2, 5)})
    written = write_eval_figures(str(tmp_path), rounds=200)
    assert [os.path.basename(p) for p in written] == EVAL_FIGURES
    for path in written:
        width, height = png_size(path)
        assert width > 500 and height > 200


def test_a_judge_that_failed_everything_still_gets_its_failure_figure(tmp_path):
    write_eval_dir(tmp_path, {"a": (5, 5), "b": (5, 5)}, others=False, fail_every=1)
    scores = json.load(open(tmp_path / "scores.json"))
    assert all(s["score"] is None and s["judged"] == 0 for s in scores["mt_bench"].values())
    assert [os.path.basename(p) for p in write_eval_figures(str(tmp_path))] == ["eval_judge_failures.png"]


def test_mt_bench_bootstrap_is_seeded_and_brackets_the_score(tmp_path):
    rows = single_rows({"m": (2, 9)}, first_questions(2), seed=3)
    first, again = mt_bench_interval(rows, "m", seed=7), mt_bench_interval(rows, "m", seed=7)
    other = mt_bench_interval(rows, "m", seed=8)
    assert first == again and (first["lower"], first["upper"]) != (other["lower"], other["upper"])
    judged = [r["rating"] for r in rows]
    assert first["score"] == round(sum(judged) / len(judged), 4) and first["questions"] == 16
    assert first["lower"] < first["score"] < first["upper"]
    wider = mt_bench_interval(rows, "m", seed=7, level=0.99)
    assert wider["lower"] <= first["lower"] and wider["upper"] >= first["upper"]
    same = paired_mt_bench_difference(rows, "m", rows, "m", seed=1)
    assert (same["difference"], same["lower"], same["upper"], same["supported"]) == (0, 0, 0, False)


class Page(HTMLParser):
    """The Evaluation section's tables as lists of rows, and the side-by-side answers as (model, text)."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.answers: list[tuple[str, str]] = []
        self.images: list[str] = []
        self._heading = self._cell = None
        self._collect = False
        self._in = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append((tag, (attrs.get("class") or "")))
        if tag == "h4":
            self._heading = ""
        elif tag == "tr" and self._heading is not None:
            self.tables.setdefault(self._heading, []).append([])
        elif tag in ("td", "th") and self._heading is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["alt"])
        elif tag == "div" and attrs.get("class") == "answer model":
            self.answers.append(["", ""])
            self._collect = True
        elif tag == "div" and attrs.get("class") == "sample":
            self._collect = False  # a question's text, not an answer

    def handle_endtag(self, tag):
        self._in.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._heading][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        where = self._in[-1] if self._in else ("", "")
        if where[0] == "h4":
            self._heading += data
        elif self._cell is not None:
            self._cell += data
        elif self._collect and where[1] == "answer-label" and not self.answers[-1][0]:
            self.answers[-1][0] = data
        elif self._collect and where[1] in ("text", "cut"):
            self.answers[-1][1] += data


@pytest.fixture
def eval_report(tmp_path):
    run_dir = tmp_path / "run"
    scores = write_eval_dir(run_dir / "final_eval", {"strong": (7, 10), "weak": (2, 5)},
                            published={"strong": {"mt_bench": 7.34, "alpaca_eval_1": 90.6}})  # fmt: skip
    write_eval_figures(str(run_dir / "final_eval"), rounds=100)
    path = write_report(str(run_dir), ["final_eval"], "eval run")
    return scores, open(path, encoding="utf-8").read()


def test_report_shows_the_evaluation_tables_and_failures_in_words(eval_report):
    scores, page = eval_report
    parsed = Page(page)
    assert '<section id="evaluation">' in page and "<h2>Evaluation</h2>" in page
    mt = parsed.tables["MT-Bench (single-answer grading, 1-10)"]
    strong = scores["mt_bench"]["strong"]
    assert mt[0] == ["model", "score", "turn 1", "turn 2", "judged", "failed"]
    assert mt[1] == ["strong", f"{strong['score']:.2f}", f"{strong['per_turn']['1']:.2f}",
                     f"{strong['per_turn']['2']:.2f}", str(strong["judged"]), str(strong["failed"])]  # fmt: skip
    pair = scores["pairwise"]["pairs"]["strong vs weak"]
    counts = [str(pair[k]) for k in ("wins", "losses", "ties", "unjudged")]
    assert parsed.tables["MT-Bench pairwise (each pair judged in both orders)"][1][:5] == ["strong vs weak", *counts]
    assert parsed.tables["AlpacaEval"][2][:4] == ["weak", "41.00", "1.70", "—"]  # no LC value: a dash
    assert parsed.tables["Arena-Hard"][1][:3] == ["strong", "35.50", "[32.00, 39.10]"]
    assert parsed.tables["Tasks"][2][2:5] == ["weak", "0.1100", "0.0310"]
    assert parsed.tables["Published and ours"][1] == ["strong", "mt_bench", "7.34", f"{strong['score']:.2f}"]
    assert [r[1] for r in parsed.tables["Bradley-Terry ratings (Elo scale)"][1:]] == ["strong", "weak"]
    rate = scores["pairwise"]["position_disagreement_rate"]
    assert f"the two orders named different winners on {100 * rate:.1f}% of the " in page
    total = strong["judged"] + strong["failed"]
    assert f"no usable rating for {strong['failed']} of {total} judgments" in page


def test_report_inlines_the_evaluation_figures(eval_report):
    _, page = eval_report
    assert len(Page(page).images) == len(EVAL_FIGURES)
    assert page.count('src="data:image/png;base64,') == len(EVAL_FIGURES) and "eval_mt_bench.png" not in page


def test_report_shows_answers_side_by_side_escaped_and_cut(eval_report):
    _, page = eval_report
    answers = Page(page).answers
    assert [model for model, _ in answers] == ["strong", "weak"] * 3
    strong, weak = answers[0][1], answers[1][1]
    assert strong.startswith("strong answers 81: " + MARKUP) and strong.endswith(" more characters")
    full = len(f"strong answers 81: {MARKUP}") + 1200
    assert f"… {full - TURN_CHARS} more characters" in strong
    assert weak == "weak answers 81: " + MARKUP
    assert "<script>" not in page and "&lt;script&gt;document.title" in page


def test_report_of_an_all_failed_evaluation_says_so(tmp_path):
    write_eval_dir(tmp_path / "run" / "eval", {"a": (5, 5)}, others=False, fail_every=1)
    write_eval_figures(str(tmp_path / "run" / "eval"))
    page = open(write_report(str(tmp_path / "run"), ["eval"], "r"), encoding="utf-8").read()
    assert "no usable rating for 32 of 32 judgments (100.0%)" in page and "so this model has no score" in page
    assert Page(page).tables["MT-Bench (single-answer grading, 1-10)"][1][:2] == ["a", "—"]


def fastchat_line(qid, turn, score, model="m", **extra) -> str:
    judge = ["gpt-4", "single-v1" + ("-multi-turn" if turn == 2 else "")]
    record = {"question_id": qid, "model": model, "judge": judge,
              "user_prompt": "...", "judgment": f"Rating: [[{score}]]", "score": score, "turn": turn,
              "tstamp": 1.0} | extra  # fmt: skip
    return json.dumps({k: v for k, v in record.items() if v is not None}) + "\n"


def test_fastchat_judgments_score_like_ours_with_minus_one_a_failure(tmp_path):
    path = tmp_path / "gpt-4_single.jsonl"
    path.write_text(fastchat_line(81, 1, 8) + fastchat_line(81, 2, -1) + fastchat_line(101, 1, 4.5)
                    + fastchat_line(101, 2, 6) + fastchat_line(81, 1, 2, model="n"))  # fmt: skip
    res = run_script([sys.executable, script("score_mt_bench.py"), str(path), "--questions", QUESTIONS], cwd=tmp_path)
    assert res.returncode == 0, res.output
    m, n = (json.loads(line) for line in res.stdout.splitlines())
    # FastChat would drop the -1 silently and report the same mean; here it is counted as a failure beside it
    assert m == {"model": "m", "score": round((8 + 4.5 + 6) / 3, 4), "judged": 3, "failed": 1,
                 "per_turn": {"1": 6.25, "2": 6.0}, "per_category": {"reasoning": 5.25, "writing": 8.0}}  # fmt: skip
    assert (n["model"], n["score"], n["failed"]) == ("n", 2.0, 0)


@pytest.mark.parametrize(
    "line, message",
    [
        (fastchat_line(81, 3, 5), "line 2 has turn 3; MT-Bench turns are 1 and 2"),
        (fastchat_line(81, 2, 11), "line 2 has score 11, off MT-Bench's 1-10 scale"),
        (fastchat_line(81, 2, 0), "line 2 has score 0, off MT-Bench's 1-10 scale"),
        (fastchat_line(81, 2, None), "line 2 lacks score"),
        (fastchat_line(81, 2, "8"), "line 2 has score '8'"),
        (fastchat_line(81, 1, 7), "line 2 judges m on question 81 turn 1 a second time"),
        (fastchat_line(9999, 1, 7), "line 2 judges question 9999, which the questions file lacks"),
    ],
)
def test_bad_fastchat_judgment_is_one_line_naming_the_line(tmp_path, line, message):
    path = tmp_path / "j.jsonl"
    path.write_text(fastchat_line(81, 1, 8) + line)
    res = run_script([sys.executable, script("score_mt_bench.py"), str(path), "--questions", QUESTIONS], cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def compare(tmp_path, *args: str):
    res = run_script([sys.executable, script("compare_runs.py"), *args, "--out", str(tmp_path / "cmp"),
                      "--bootstrap", "500"], cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.output
    return res.stdout, json.load(open(tmp_path / "cmp" / "compare.json"))


def test_compare_runs_supports_a_clear_difference_and_not_an_equal_one(tmp_path):
    # run a's "tuned" model is rated far above run b's; "base" is drawn from the same range in both runs
    write_eval_dir(tmp_path / "a" / "final_eval", {"tuned": (7, 10), "base": (3, 6)}, seed=1, others=False)
    write_eval_dir(tmp_path / "b", {"tuned": (2, 5), "base": (3, 6)}, seed=2, others=False)
    out, result = compare(tmp_path, str(tmp_path / "a"), str(tmp_path / "b"))
    by_pair = {(d["a"].rsplit("/", 1)[1], d["b"].rsplit("/", 1)[1]): d for d in result["differences"]}
    tuned, base = by_pair["tuned", "tuned"]["mt_bench"], by_pair["base", "base"]["mt_bench"]
    assert tuned["supported"] and tuned["lower"] > 0 and tuned["questions"] == 16
    assert not base["supported"] and base["lower"] < 0 < base["upper"]
    assert "MT-Bench" in out and ": supported" in out and "not supported (the interval includes 0)" in out
    labels = [f"{r['run']}/{r['stage']}/{r['model']}" for r in result["rows"]]
    assert labels == [f"{tmp_path}/a/final_eval/base", f"{tmp_path}/a/final_eval/tuned", f"{tmp_path}/b/base",
                      f"{tmp_path}/b/tuned"]  # fmt: skip
    assert all(r["mt_bench_lower"] <= r["mt_bench"] <= r["mt_bench_upper"] for r in result["rows"])
    assert (
        result["figures"] == ["compare_mt_bench.png"] and png_size(tmp_path / "cmp" / "compare_mt_bench.png")[0] > 300
    )
    assert compare(tmp_path, str(tmp_path / "a"), str(tmp_path / "b"))[1] == result, "seeded: the same numbers"


def test_compare_runs_alpaca_difference_uses_the_combined_standard_error(tmp_path):
    write_eval_dir(tmp_path / "a", {"strong": (5, 6), "weak": (5, 6)})
    _, result = compare(tmp_path, str(tmp_path / "a"), "--pair", "strong", "weak")
    (diff,) = result["differences"]
    alpaca = diff["alpaca_eval"]
    error = (1.4**2 + 1.7**2) ** 0.5
    assert alpaca["difference"] == pytest.approx(81.2 - 41.0) and alpaca["standard_error"] == pytest.approx(
        error, abs=1e-4
    )
    assert alpaca["lower"] == pytest.approx(40.2 - 1.959964 * error, abs=1e-3) and alpaca["supported"]
    assert diff["mt_bench"]["questions"] == 16
    assert sorted(result["figures"]) == ["compare_bradley_terry.png", "compare_mt_bench.png", "compare_win_rates.png"]
    for name in result["figures"]:
        assert png_size(tmp_path / "cmp" / name)[0] > 300


def test_compare_runs_refuses_a_directory_without_scores(tmp_path):
    (tmp_path / "run" / "sft").mkdir(parents=True)
    res = run_script([sys.executable, script("compare_runs.py"), str(tmp_path / "run")], cwd=tmp_path)
    assert res.returncode == 2 and "no scores.json here or in its stage directories" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
