"""Binarizing judged completions into preference pairs, and the statistics reported about them."""

from __future__ import annotations

import json
import os
import random

import pytest
from conftest import SHARED_DATA

from data_gen.binarize import binarize
from data_gen.completion_scores import completion_score
from data_gen.preference_figure import plot_preference_statistics
from data_gen.preference_stats import card_lines, preference_statistics
from data_gen.rating_vocabulary import ALL_ASPECTS, STRATEGIES
from data_gen.stage import derived_seed
from distill_core.errors import DataError, RecipeError

POOL = os.path.join(SHARED_DATA, "alpaca_eval_completion_pool.jsonl")
TRL_COLUMNS = {"prompt", "chosen", "rejected"}
EXTRA_COLUMNS = {"score_chosen", "score_rejected", "prompt_id", "chosen_model", "rejected_model"}
SEEDS = range(60)


def rating(value) -> dict:
    """One aspect entry: an int is an ok rating; "na" and "failed" are those statuses."""
    if value in ("na", "failed"):
        return {"rating": None, "rationale": "", "status": value}
    return {"rating": value, "rationale": "because", "status": "ok"}


def completion(model: str, ratings: tuple, overall: float | None = None, text: str | None = None) -> dict:
    """ratings follow ALL_ASPECTS (instruction_following, honesty, truthfulness, helpfulness); None = not judged."""
    return {
        "model": model,
        "text": text or f"answer from {model}",
        "principle": "helpfulness",
        "finish_reason": "stop",
        "ratings": {a: rating(v) for a, v in zip(ALL_ASPECTS, ratings) if v is not None},
        "overall_score": overall,
    }


def judged(prompt_id: str, *completions: dict) -> dict:
    return {"prompt_id": prompt_id, "prompt": f"question {prompt_id}", "completions": list(completions)}


def four_way() -> dict:
    return judged(
        "p1",
        completion("A", (5, 5, 5, 5)),  # (5+5+5+5)/4 = 5.0
        completion("B", (4, "na", 4, 5)),  # (4+4+5)/3 = 13/3 ≈ 4.333 (N/A left out, not counted as 0)
        completion("C", (3, 3, 2, 2)),  # (3+3+2+2)/4 = 2.5
        completion("D", (1, 1, 1, 1)),  # 1.0
    )


def outcome(pair: dict) -> tuple:
    return pair["chosen_model"], pair["score_chosen"], pair["rejected_model"], pair["score_rejected"]


def single(rows: list[dict], **kwargs) -> dict | None:
    pairs, _ = binarize(rows, **kwargs)
    assert len(pairs) <= 1
    return pairs[0] if pairs else None


# ---------------------------------------------------------------- scores


def test_mean_ignores_na_and_unjudged_aspects():
    assert completion_score(completion("B", (4, "na", 4, 5))) == pytest.approx(13 / 3)  # not 13/4
    assert completion_score(completion("E", (5, None, 3, None))) == 4.0  # (5+3)/2
    assert completion_score(completion("F", (5, 1, 3, 2)), aspects=("helpfulness",)) == 2.0
    assert completion_score(completion("G", (None, "na", None, None))) is None  # nothing rated


def test_a_failed_aspect_excludes_the_completion():
    best_but_failed = completion("F", (5, "failed", 5, 5))
    assert completion_score(best_but_failed) is None
    rows = [judged("p", best_but_failed, completion("M", (3, 3, 3, 3)), completion("L", (2, 2, 2, 2)))]
    pairs, stats = binarize(rows, strategy="lowest")
    assert [(p["chosen_model"], p["rejected_model"]) for p in pairs] == [("M", "L")]
    assert stats["unscored_by_reason"]["failed"] == 1 and stats["completions_unscored"] == 1


def test_overall_score_is_used_as_is():
    rows = [
        judged(
            "p",
            completion("A", (1, 1, 1, 1), overall=8.5),
            completion("B", (5, 5, 5, 5), overall=3),
            completion("C", (5, 5, 5, 5), overall=None),
        )
    ]
    pair = single(rows, score="overall", strategy="lowest")
    assert outcome(pair) == ("A", 8.5, "B", 3.0)
    assert completion_score(rows[0]["completions"][2], "overall") is None


# ---------------------------------------------------------------- strategies


def test_lowest_pairs_best_with_worst():
    for seed in SEEDS:
        pair = single([four_way()], strategy="lowest", seed=seed)
        # chosen A at 5.0, rejected D at 1.0: margin 4.0
        assert outcome(pair) == ("A", 5.0, "D", 1.0)


def test_lowest_draws_among_those_tied_for_lowest():
    rows = [
        judged("p", completion("A", (5, 5, 5, 5)), completion("B", (2, 2, 2, 2)), completion("C", (2, "na", 2, 2)))
    ]
    rejected = {single(rows, strategy="lowest", seed=s)["rejected_model"] for s in SEEDS}
    assert rejected == {"B", "C"}  # both at 2.0


def test_random_lower_draws_among_strictly_lower():
    expected = {"B": 13 / 3, "C": 2.5, "D": 1.0}
    seen = set()
    for seed in SEEDS:
        pair = single([four_way()], seed=seed)
        assert pair["chosen_model"] == "A" and pair["score_chosen"] == 5.0
        assert pair["score_rejected"] == pytest.approx(expected[pair["rejected_model"]])
        seen.add(pair["rejected_model"])
    assert seen == {"B", "C", "D"}


def test_random_rest_counts_an_equal_draw_as_a_tie():
    # A and B both score 5.0, C scores 3.0: chosen is A or B; rejected is either of the other two.
    rows = [
        judged("p", completion("A", (5, 5, 5, 5)), completion("B", (5, "na", 5, 5)), completion("C", (3, 3, 3, 3)))
    ]
    kept, ties = [], 0
    for seed in SEEDS:
        pairs, stats = binarize(rows, strategy="random_rest", seed=seed)
        kept += pairs
        ties += stats["dropped"]["tie"]
    assert ties > 0 and len(kept) + ties == len(SEEDS)
    assert all((p["score_chosen"], p["rejected_model"], p["score_rejected"]) == (5.0, "C", 3.0) for p in kept)
    assert {p["chosen_model"] for p in kept} == {"A", "B"}  # the top tie is drawn, not taken by position

    kept_ties = [
        p
        for s in SEEDS
        for p in binarize(rows, strategy="random_rest", seed=s, drop_ties=False)[0]
        if p["score_chosen"] == p["score_rejected"]
    ]
    assert kept_ties and all({p["chosen_model"], p["rejected_model"]} == {"A", "B"} for p in kept_ties)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_shared_top_score_is_drawn_for_every_strategy(strategy):
    rows = [judged("p", completion("A", (4, 4, 4, 4)), completion("B", (4, 4, 4, 4)), completion("C", (1, 2, 1, 2)))]
    pairs = [p for s in SEEDS for p in binarize(rows, strategy=strategy, seed=s)[0]]
    assert {p["chosen_model"] for p in pairs} == {"A", "B"}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("drop_ties", [True, False])
def test_all_tied_prompts_are_dropped(strategy, drop_ties):
    rows = [
        judged("p", completion("A", (4, 4, 4, 4)), completion("B", (4, "na", 4, 4)), completion("C", (3, 5, 4, 4)))
    ]
    pairs, stats = binarize(rows, strategy=strategy, drop_ties=drop_ties)  # every mean is 4.0
    assert pairs == [] and stats["dropped"]["all_tied"] == 1 and stats["kept"] == 0


def test_min_margin():
    pairs, stats = binarize([four_way()], strategy="lowest", min_margin=4.0)  # 5.0 - 1.0 = 4.0: kept
    assert len(pairs) == 1
    pairs, stats = binarize([four_way()], strategy="lowest", min_margin=4.5)
    assert pairs == [] and stats["dropped"]["below_margin"] == 1
    # 13/3 - 10/3 is 0.9999999999999996 in floats; a margin of exactly 1 must still pass min_margin=1.
    rows = [judged("p", completion("B", (4, "na", 4, 5)), completion("E", (3, "na", 3, 4)))]
    assert single(rows, strategy="lowest", min_margin=1.0) is not None
    assert single(rows, strategy="lowest", min_margin=1.01) is None


def test_fewer_than_two_scored_completions_drop_the_prompt():
    rows = [
        judged("one-ok", completion("A", (5, 5, 5, 5)), completion("B", (1, "failed", 1, 1))),
        judged("alone", completion("A", (5, 5, 5, 5))),
        judged("empty"),
        judged("no-overall", completion("A", (5, 5, 5, 5), overall=9.0), completion("B", (1, 1, 1, 1))),
    ]
    pairs, stats = binarize(rows[:3])
    assert pairs == [] and stats["dropped"]["fewer_than_2_scored"] == 3 and stats["prompts"] == 3
    pairs, stats = binarize(rows[3:], score="overall")
    assert pairs == [] and stats["unscored_by_reason"]["no_overall_score"] == 1


# ---------------------------------------------------------------- determinism


def key(pairs: list[dict]) -> list[tuple]:
    return sorted((p["prompt_id"], p["chosen_model"], p["rejected_model"]) for p in pairs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_pairs_whatever_the_order(strategy, realistic):
    first, _ = binarize(realistic, strategy=strategy, seed=3)
    shuffled = [
        dict(r, completions=random.Random(i).sample(r["completions"], len(r["completions"])))
        for i, r in enumerate(realistic)
    ]
    random.Random(0).shuffle(shuffled)
    again, _ = binarize(shuffled, strategy=strategy, seed=3)
    assert key(first) == key(again)
    other, _ = binarize(realistic, strategy=strategy, seed=4)
    assert key(first) != key(other)


# ---------------------------------------------------------------- scale-bug guard


def worst_case_rows() -> list[dict]:
    """Prompts where completion BAD is rated 1 on every aspect (and 1 overall), against various others."""
    bad = completion("BAD", (1, 1, 1, 1), overall=1.0, text="a useless answer")
    return [
        judged("just-better", bad, completion("X", (2, 1, 1, 1), overall=1.5)),
        judged(
            "tied-bad", bad, completion("X", (1, "na", 1, 1), overall=1.0), completion("Y", (1, 2, 1, 1), overall=2.0)
        ),
        judged("all-bad", bad, completion("X", (1, "na", 1, 1), overall=1.0)),
        judged(
            "failed-rest",
            bad,
            completion("X", (5, "failed", 5, 5), overall=None),
            completion("Y", (1, 1, 1, 1), overall=1),
        ),
        judged("mixed", completion("Y", (3, 3, None, 4), overall=6.0), bad, completion("Z", (5, 5, 5, 5), overall=10)),
    ]


def test_a_completion_rated_1_everywhere_is_never_chosen():
    rows = worst_case_rows()
    for score in ("mean", "overall"):
        for strategy in STRATEGIES:
            for drop_ties in (True, False):
                for seed in range(150):
                    pairs, _ = binarize(rows, score=score, strategy=strategy, seed=seed, drop_ties=drop_ties)
                    assert pairs, (score, strategy, seed)
                    for p in pairs:
                        assert p["chosen_model"] != "BAD", (score, strategy, drop_ties, seed, p)
                        assert p["score_chosen"] > 1.0


@pytest.mark.parametrize("bad", [10, 0, 6, -1, 1.5, 5.0, True, "5", None])
def test_an_off_scale_rating_raises_instead_of_being_used(bad):
    entry = completion("BAD", (1, 1, 1, 1))
    entry["ratings"]["helpfulness"] = {"rating": bad, "rationale": "", "status": "ok"}
    rows = [judged("pid-7", completion("OK", (3, 3, 3, 3)), entry)]
    for call in (
        lambda: binarize(rows),
        lambda: completion_score(entry, prompt_id="pid-7"),
        lambda: preference_statistics(rows, []),
    ):
        with pytest.raises(DataError) as err:
            call()
        message = str(err.value)
        assert "pid-7" in message and "BAD" in message and "helpfulness" in message and repr(bad) in message
        assert "\n" not in message


@pytest.mark.parametrize("bad", [0, 0.5, 11, 100, True, float("nan"), "9"])
def test_an_off_scale_overall_score_raises(bad):
    rows = [judged("pid-8", completion("OK", (3, 3, 3, 3), overall=5.0), completion("BAD", (1, 1, 1, 1), overall=bad))]
    with pytest.raises(DataError, match="pid-8.*BAD.*overall_score"):
        binarize(rows, score="overall")


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ({"rating": None, "rationale": "", "status": "na"}, "only allowed for honesty"),
        ({"rating": 4, "rationale": "", "status": "maybe"}, "status 'maybe'"),
        ({"rating": 4, "rationale": ""}, "status None"),
    ],
)
def test_a_broken_status_raises(entry, fragment):
    c = completion("M", (3, 3, 3, 3))
    c["ratings"]["truthfulness"] = entry
    with pytest.raises(DataError, match=fragment):
        binarize([judged("p", c, completion("N", (2, 2, 2, 2)))])


def test_bad_options_and_rows():
    with pytest.raises(RecipeError, match="random_lower, random_rest, lowest"):
        binarize([], strategy="worst")
    with pytest.raises(RecipeError, match="mean, overall"):
        binarize([], score="median")
    with pytest.raises(RecipeError, match="mean, overall"):
        completion_score(completion("A", (1, 1, 1, 1)), score="max")
    with pytest.raises(RecipeError, match="instruction_following"):
        binarize([], aspects=("style",))
    with pytest.raises(RecipeError, match="min_margin"):
        binarize([], min_margin=-1)
    with pytest.raises(DataError, match="'p1' appears in more than one row"):
        binarize([four_way(), four_way()])


# ---------------------------------------------------------------- output format


def test_rows_are_trl_conversational_preferences(tmp_path, realistic):
    import datasets

    pairs, _ = binarize(realistic)
    ds = datasets.Dataset.from_list(pairs)
    assert set(ds.column_names) == TRL_COLUMNS | EXTRA_COLUMNS
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert set(loaded.column_names) == TRL_COLUMNS | EXTRA_COLUMNS and len(loaded) == len(pairs)
    assert loaded.features["score_chosen"].dtype == "float64"
    for row in loaded:
        for column, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            assert [set(m) for m in row[column]] == [{"role", "content"}]
            assert row[column][0]["role"] == role and row[column][0]["content"]


# ---------------------------------------------------------------- a realistic set


def synthetic_ratings(text: str) -> dict:
    """Deterministic ratings from the text: about 3% parse failures and 10% N/A honesty, like a real judge."""
    ratings = {}
    for aspect in ALL_ASPECTS:
        draw = derived_seed(text, aspect) % 100
        if draw < 3:
            ratings[aspect] = {"rating": None, "rationale": "unparsed", "status": "failed"}
        elif aspect == "honesty" and draw < 13:
            ratings[aspect] = {"rating": None, "rationale": "n/a", "status": "na"}
        else:
            # Longer answers score a little higher, so some models win more often than others.
            value = min(5, 1 + derived_seed(text, aspect, "r") % 4 + (len(text) > 1200))
            ratings[aspect] = {"rating": value, "rationale": "synthetic", "status": "ok"}
            if aspect in ("truthfulness", "helpfulness"):
                ratings[aspect]["type"] = 1 + draw % 3
    return ratings


@pytest.fixture(scope="module")
def realistic() -> list[dict]:
    rows = []
    with open(POOL, encoding="utf-8") as f:
        for i, line in enumerate(f):
            pool = json.loads(line)
            rows.append(
                {
                    "prompt_id": f"alpaca-{i:03d}",
                    "prompt": pool["prompt"],
                    "completions": [
                        {
                            "model": c["model"],
                            "text": c["text"],
                            "principle": "helpfulness",
                            "finish_reason": "stop",
                            "ratings": synthetic_ratings(c["text"]),
                            "overall_score": None,
                        }
                        for c in pool["completions"]
                    ],
                }
            )
    return rows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invariants_on_real_completions(strategy, realistic):
    by_id = {r["prompt_id"]: r for r in realistic}
    pairs, stats = binarize(realistic, strategy=strategy)
    assert stats["prompts"] == len(realistic) == 120
    assert stats["kept"] + sum(stats["dropped"].values()) == stats["prompts"]
    assert 60 < len(pairs) < 120 and stats["completions_unscored"] > 0
    for p in pairs:
        row = by_id[p["prompt_id"]]
        texts = {c["model"]: c["text"] for c in row["completions"]}
        assert p["prompt"][0]["content"] == row["prompt"]
        assert p["chosen_model"] != p["rejected_model"]
        assert p["chosen"][0]["content"] == texts[p["chosen_model"]]
        assert p["rejected"][0]["content"] == texts[p["rejected_model"]]
        scores = {c["model"]: completion_score(c) for c in row["completions"]}
        assert p["score_chosen"] == scores[p["chosen_model"]] == max(s for s in scores.values() if s is not None)
        assert p["score_rejected"] == scores[p["rejected_model"]]
        assert p["score_chosen"] > p["score_rejected"]
        if strategy == "lowest":
            assert p["score_rejected"] == min(s for s in scores.values() if s is not None)


# ---------------------------------------------------------------- statistics


def test_statistics_on_a_hand_built_example(tmp_path):
    rows = [
        four_way(),
        judged(
            "p2",
            completion("A", (2, "failed", 3, 3)),
            completion("C", (4, 4, "failed", 4)),
            completion("D", (4, "na", 5, 5)),
        ),
    ]
    pairs, _ = binarize(rows, strategy="lowest")
    # p1: A (5.0) over D (1.0). p2: A and C failed, D alone: dropped.
    assert [(p["chosen_model"], p["rejected_model"]) for p in pairs] == [("A", "D")]
    stats = preference_statistics(rows, pairs, judge_cost_usd=0.25)
    # honesty: p1 gives 5, N/A, 3, 1; p2 gives failed, 4, N/A
    assert stats["aspect_histograms"]["honesty"] == {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1, "na": 2, "failed": 1}
    assert stats["aspect_histograms"]["truthfulness"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 2, "na": 0, "failed": 1}
    # 7 completions x 4 aspects = 28 entries, 2 of them failed
    assert (stats["failed_ratings"], stats["total_ratings"]) == (2, 28)
    assert stats["failure_rate"] == pytest.approx(2 / 28)
    assert stats["per_model"] == {
        "A": {"completions": 2, "chosen": 1, "rejected": 0},
        "B": {"completions": 1, "chosen": 0, "rejected": 0},
        "C": {"completions": 2, "chosen": 0, "rejected": 0},
        "D": {"completions": 2, "chosen": 0, "rejected": 1},
    }
    assert stats["margins"] == [4.0] and stats["margin_summary"]["median"] == 4.0
    assert stats["margin_histogram"]["counts"][-1] == 1 and stats["margin_histogram"]["edges"][-1] == 4.0
    assert stats["pairs"] == 1 and stats["judge_cost_usd"] == 0.25
    card = "\n".join(card_lines(stats))
    assert "| honesty | 1 | 0 | 1 | 1 | 1 | 2 | 1 | 0 |" in card and "$0.2500" in card and "7.14%" in card
    assert "| D | 2 | 0 | 1 |" in card


def test_the_figure_is_written(tmp_path, realistic):
    pairs, _ = binarize(realistic)
    stats = preference_statistics(realistic, pairs, judge_cost_usd=1.5)
    path = plot_preference_statistics(stats, str(tmp_path / "fig" / "preferences.png"))
    assert path.endswith("preferences.png") and os.path.getsize(path) > 10_000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads(json.dumps(stats)) == stats


def test_expected_ratings_from_logprob_judging_are_fractional_but_on_the_scale():
    def expected(value) -> dict:
        return {"rating": value, "status": "ok", "rationale": "", "mode": "expected"}

    good = {
        "model": "a",
        "text": "x",
        "principle": "helpfulness",
        "finish_reason": "stop",
        "ratings": {a: expected(4.25) for a in ALL_ASPECTS},
    }
    assert completion_score(good) == pytest.approx(4.25)
    for bad in (0.5, 5.01, True, float("nan")):
        off = {**good, "ratings": {**good["ratings"], "honesty": expected(bad)}}
        with pytest.raises(DataError):
            completion_score(off)
    plain = {**good, "ratings": {**good["ratings"], "honesty": {"rating": 4.25, "status": "ok", "rationale": ""}}}
    with pytest.raises(DataError, match="not an integer"):
        completion_score(plain)  # a fractional rating from a text reply is a parse error, not a score
