"""Evaluation arithmetic: judge verdict parsing, win rates, Bradley-Terry ratings and intervals, and the scripts that
recompute the reference tools' numbers from their files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from distill_core.errors import DataError, UserError
from evaluation.bradley_terry import count_battles, fit, rank_models
from evaluation.reference_files import read_arena_battles, score_alpaca_annotations
from evaluation.verdicts import read_arena, read_pairwise, read_rating
from evaluation.win_rate import arena_games, pairwise_outcome, win_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# REFERENCE_EVAL.md's worked check: a>b 6 times, b>a 3, 1 tie; b>c 7, c>b 3; a>c 8, c>a 2
WORKED = (
    [("a", "b", 1.0)] * 6
    + [("a", "b", 0.0)] * 3
    + [("a", "b", 0.5)]
    + [("b", "c", 1.0)] * 7
    + [("b", "c", 0.0)] * 3
    + [("a", "c", 1.0)] * 8
    + [("a", "c", 0.0)] * 2
)


@pytest.mark.parametrize(
    "reply, rating",
    [
        ("The answer is correct and clear.\nRating: [[7]]", 7),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [7]", 7),
        ("Rating: [[7]]. To repeat: [[7]]", 7),
        ("[[10]]", 10),
    ],
)
def test_mt_bench_rating_is_read(reply, rating):
    assert read_rating(reply) == (rating, None)


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("Rating: [[rating]]", "no 'Rating: [[N]]' line"),
        ("Rating: [[15]]", "off the scale 1 to 10"),
        ("Rating: [[0]]", "off the scale 1 to 10"),
        ("First [[6]], on reflection [[8]]", "2 different ratings (6 and 8)"),
        ("A fine answer.", "no 'Rating: [[N]]' line"),
    ],
)
def test_mt_bench_rating_failures_say_why(reply, reason):
    value, error = read_rating(reply)
    assert value is None and reason in error


@pytest.mark.parametrize("reply, verdict", [("[[A]]", "A"), ("so [[B]]", "B"), ("[[C]]", "tie"), ("[[A]] [[A]]", "A")])
def test_pairwise_verdicts(reply, verdict):
    assert read_pairwise(reply) == (verdict, None)


def test_pairwise_conflicting_or_missing_verdicts_fail():
    assert "2 different verdicts" in read_pairwise("[[A]] ... no, [[B]]")[1]
    assert read_pairwise("[[D]]")[0] is None
    assert read_pairwise("A is better")[0] is None


@pytest.mark.parametrize("label", ["A>>B", "A>B", "A=B", "B>A", "B>>A"])
def test_arena_verdicts_double_then_single_brackets(label):
    assert read_arena(f"My final verdict: [[{label}]]") == (label, None)
    assert read_arena(f"My final verdict: [{label}]") == (label, None)


def test_arena_double_brackets_win_over_single_and_conflicts_fail():
    assert read_arena("[B>A] was my first thought; final: [[A>B]]") == ("A>B", None)
    value, error = read_arena("[[A>B]] ... [[B>>A]]")
    assert value is None and "2 different verdicts (A>B and B>>A)" in error


def test_arena_games_weigh_much_better_three_times_and_unparsed_none():
    assert arena_games("A>>B", model_is_a=True) == [1.0, 1.0, 1.0]
    assert arena_games("A>>B", model_is_a=False) == [0.0, 0.0, 0.0]
    assert arena_games("A=B", model_is_a=False) == [0.5]
    assert arena_games("B>A", model_is_a=False) == [1.0]
    assert arena_games(None, model_is_a=True) == []


def test_swapped_pair_disagreement_is_a_tie():
    assert pairwise_outcome("A", "B") == 1.0  # model 1 won in both positions
    assert pairwise_outcome("B", "A") == 0.0
    assert pairwise_outcome("A", "A") == 0.5  # position A won twice: a position bias, not a preference
    assert pairwise_outcome("tie", "tie") == 0.5
    assert pairwise_outcome("A", None) is None


def test_win_rate_arithmetic_by_hand():
    # x = preference - 1: 0, 1, 1, .5, .5 (legacy 0 read as a draw by the file reader), .7; one unannotated
    result = win_rate([1, 2, 2, 1.5, 1.5, 1.7, None, float("nan")])
    x = np.array([0, 1, 1, 0.5, 0.5, 0.7])
    assert result.win_rate == pytest.approx(100 * x.mean())
    assert result.standard_error == pytest.approx(100 * x.std(ddof=1) / math.sqrt(6))
    assert (result.n_wins, result.n_wins_base, result.n_draws, result.n_total, result.n_unannotated) == (3, 1, 2, 6, 2)


def _annotations(tmp_path, preferences, name="annotations.json"):
    records = [
        {
            "instruction": f"instruction {i}",
            "output_1": "b" * 10,
            "output_2": "m" * (10 * (i + 1)),
            "generator_1": "text_davinci_003",
            "generator_2": "zephyr-7b-beta",
            "preference": p,
        }
        for i, p in enumerate(preferences)
    ]
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_score_alpaca_eval_script_prints_alpaca_eval_numbers(tmp_path):
    path = _annotations(tmp_path, [2, 2, 1, 0, None])  # 0 is AlpacaEval's legacy draw
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts/score_alpaca_eval.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    x = np.array([1, 1, 0, 0.5])
    assert result["win_rate"] == pytest.approx(100 * x.mean())
    assert result["standard_error"] == pytest.approx(100 * x.std(ddof=1) / 2)
    assert {k: result[k] for k in ("n_wins", "n_wins_base", "n_draws", "n_total", "n_unannotated")} == {
        "n_wins": 2,
        "n_wins_base": 1,
        "n_draws": 1,
        "n_total": 4,
        "n_unannotated": 1,
    }
    assert result["avg_length"] == 30  # mean of 10, 20, 30, 40, 50 characters


@pytest.mark.parametrize("bad", ["A", 3, -1, True])
def test_unknown_preference_is_one_line_error_naming_the_record(tmp_path, bad):
    path = _annotations(tmp_path, [2, 1, bad])
    with pytest.raises(DataError, match=r"record 2 has preference"):
        score_alpaca_annotations(str(path))
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts/score_alpaca_eval.py"), str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "record 2" in out.stderr
    assert "Traceback" not in out.stderr


def test_bradley_terry_reproduces_the_worked_check():
    ranking = rank_models(count_battles(WORKED), anchor=("a", 1000.0), rounds=0)
    ratings = {r.model: r.rating for r in ranking.ratings}
    assert ratings["a"] == pytest.approx(1000.00, abs=0.01)
    assert ratings["b"] == pytest.approx(896.41, abs=0.01)
    assert ratings["c"] == pytest.approx(753.49, abs=0.01)


def test_bradley_terry_matches_an_independent_fit():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(3)
    strength = np.array([0.0, 0.8, -0.5, 1.5, 0.3])
    records, pairs = [], []
    for _ in range(3000):
        i, j = rng.choice(5, 2, replace=False)
        p = 1 / (1 + math.exp(strength[j] - strength[i]))
        winner, loser = (i, j) if rng.random() < p else (j, i)
        records.append((f"m{winner}", f"m{loser}", 1.0))
        pairs.append((int(winner), int(loser)))
    theirs = choix.opt_pairwise(5, pairs, alpha=0.0)  # natural log-strengths: P(i>j) = exp(t_i)/(exp t_i + exp t_j)
    ours = fit(count_battles(records, [f"m{i}" for i in range(5)])) * math.log(10)
    assert np.allclose(ours - ours[0], theirs - theirs[0], atol=1e-4)


def test_bootstrap_intervals_are_reproducible_with_a_seed():
    battles = count_battles(WORKED * 3)
    first = rank_models(battles, anchor=("a", 1000.0), rounds=200, seed=7)
    again = rank_models(battles, anchor=("a", 1000.0), rounds=200, seed=7)
    other = rank_models(battles, anchor=("a", 1000.0), rounds=200, seed=8)
    assert first.as_rows() == again.as_rows()
    assert first.as_rows() != other.as_rows()
    for r in first.ratings:
        assert r.lower <= r.rating <= r.upper


def test_ranks_come_from_non_overlapping_intervals():
    records = [("top", "mid", 1.0)] * 90 + [("mid", "top", 1.0)] * 10
    records += [("mid", "low", 1.0)] * 90 + [("low", "mid", 1.0)] * 10
    records += [("low", "twin", 1.0)] * 50 + [("twin", "low", 1.0)] * 50
    ranking = rank_models(count_battles(records), rounds=300, seed=0)
    ranks = {r.model: r.rank for r in ranking.ratings}
    assert ranks["top"] == 1 and ranks["mid"] == 2
    assert ranks["low"] == ranks["twin"] == 3  # a coin-flip pair cannot be told apart


def test_a_model_that_never_lost_is_refused_by_name_unless_a_prior_is_given():
    records = [("champ", "a", 1.0)] * 5 + [("a", "b", 1.0)] * 3 + [("b", "a", 1.0)] * 2
    with pytest.raises(UserError, match="champ never lost or never won"):
        rank_models(count_battles(records), rounds=0)
    ranking = rank_models(count_battles(records), rounds=0, l2=0.01)
    assert ranking.ratings[0].model == "champ" and math.isfinite(ranking.ratings[0].rating)


def test_rank_models_script_reads_arena_battles(tmp_path):
    names = {1.0: "model_a", 0.0: "model_b", 0.5: "tie"}
    path = tmp_path / "battles.jsonl"
    path.write_text("".join(json.dumps({"model_a": a, "model_b": b, "winner": names[o]}) + "\n" for a, b, o in WORKED))
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts/rank_models.py"), str(path), "--anchor", "a=1000"]
        + ["--bootstrap", "50", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["model"] for r in rows] == ["a", "b", "c"]
    assert set(rows[0]) >= {"model", "rating", "lower", "upper", "rank"}
    assert rows[1]["rating"] == pytest.approx(896.41, abs=0.01)
    assert "50 bootstrap rounds (seed 1)" in out.stderr


@pytest.mark.parametrize(
    "line, message",
    [
        ({"model_a": "a", "model_b": "b", "winner": "a"}, "line 2 has winner 'a'"),
        ({"model_a": "a", "winner": "tie"}, "line 2 lacks model_a or model_b"),
        ({"model_a": "a", "model_b": "a", "winner": "tie"}, "line 2 pits a against itself"),
    ],
)
def test_bad_battles_are_one_line_errors(tmp_path, line, message):
    path = tmp_path / "battles.jsonl"
    path.write_text(json.dumps({"model_a": "a", "model_b": "b", "winner": "tie"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError, match=message):
        read_arena_battles(str(path))


def test_anchor_naming_an_absent_model_is_refused(tmp_path):
    with pytest.raises(UserError, match="anchor model 'gpt-4' appears in no battle"):
        rank_models(count_battles(WORKED), anchor=("gpt-4", 1000.0), rounds=0)
