"""Min-K% Prob and Min-K%++ against a plain forward pass, batching, the AUC, and the contamination check script."""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys

import pytest
from conftest import SHARED_DATA, run_script, script

ARC = os.path.join(SHARED_DATA, "benchmarks", "arc_challenge.jsonl")
TEXTS = [
    "Which gas do plants take in?",
    "A student heats water in a pot until it boils. Which change of state happens to the water as it boils?\nA gas",
    "Rocks",
    "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect "
    "of this increase in rotation?\nPlanetary density will decrease.\nPlanetary days will become shorter.",
]


@pytest.fixture(scope="module")
def tiny(smoke_assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(smoke_assets / "runs" / "smoke" / "tiny-model")
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), path


def test_scores_equal_a_hand_computed_forward_pass(tiny):
    import torch

    from evaluation.min_k import min_k_plus_plus, min_k_prob, token_log_probs

    model, tokenizer, _ = tiny
    text = TEXTS[1]
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    log_p = torch.log_softmax(logits.double(), dim=-1)[:-1]  # row t predicts token t + 1
    token_lp = log_p[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    mu = (log_p.exp() * log_p).sum(-1)
    sigma = ((log_p.exp() * log_p**2).sum(-1) - mu**2).sqrt()
    normalized = (token_lp - mu) / sigma

    (scores,) = token_log_probs(model, tokenizer, [text])
    # every real token is scored, the first given BOS alone; BOS itself never is
    assert len(scores.log_probs) == len(ids) - 1
    assert scores.log_probs == pytest.approx(token_lp.tolist(), abs=1e-5)
    assert scores.normalized == pytest.approx(normalized.tolist(), abs=1e-5)
    for k in (0.2, 0.5, 1.0, 1e-6):
        lowest = math.ceil(k * len(token_lp))
        assert min_k_prob(scores, k) == pytest.approx(token_lp.sort().values[:lowest].mean().item(), abs=1e-5)
        assert min_k_plus_plus(scores, k) == pytest.approx(normalized.sort().values[:lowest].mean().item(), abs=1e-5)
    assert min_k_prob(scores, 1.0) == pytest.approx(token_lp.mean().item(), abs=1e-5)


def test_a_batch_of_different_lengths_scores_like_one_by_one(tiny):
    from evaluation.min_k import token_log_probs

    model, tokenizer, _ = tiny
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert len(set(lengths)) == len(TEXTS)  # right padding is exercised: every row has its own length
    batched = token_log_probs(model, tokenizer, TEXTS, batch_size=4)
    for text, together in zip(TEXTS, batched):
        (alone,) = token_log_probs(model, tokenizer, [text], batch_size=1)
        assert together.log_probs == pytest.approx(alone.log_probs, abs=1e-5)
        assert together.normalized == pytest.approx(alone.normalized, abs=1e-5)
        assert not together.truncated

    cut = token_log_probs(model, tokenizer, TEXTS, batch_size=3, max_length=12)
    for length, scores, full in zip(lengths, cut, batched):
        assert scores.truncated == (length > 12)
        assert len(scores.log_probs) == min(length, 12) - 1
        assert scores.log_probs == pytest.approx(full.log_probs[: len(scores.log_probs)], abs=1e-5)


def test_lowest_count_is_a_ceiling_of_at_least_one_token():
    from evaluation.min_k import lowest_count, min_k_prob

    assert lowest_count(30, 0.1) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert lowest_count(10, 0.2) == 2 and lowest_count(11, 0.2) == 3
    assert lowest_count(4, 0.01) == 1 and lowest_count(7, 1.0) == 7
    assert min_k_prob([-1.0, -5.0, -3.0, -2.0], 0.5) == -4.0
    for k in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction in"):
            lowest_count(10, k)


def test_auc_equals_sklearn_and_is_one_for_separable_scores():
    from sklearn.metrics import roc_auc_score

    from evaluation.min_k import auc

    rng = random.Random(7)
    for trial in range(20):
        members = [round(rng.gauss(0.3, 1), 1) for _ in range(rng.randint(1, 40))]  # rounded: ties happen
        others = [round(rng.gauss(0, 1), 1) for _ in range(rng.randint(1, 40))]
        labels = [1] * len(members) + [0] * len(others)
        assert auc(members, others) == pytest.approx(roc_auc_score(labels, members + others), abs=1e-12), trial
    assert auc([5.0, 6.0, 7.0], [1.0, 2.0, 4.9]) == 1.0
    assert auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError):
        auc([], [1.0])


def test_perturbation_is_seeded_and_keeps_words_and_whitespace():
    from evaluation.contamination_check import perturb_text

    text = "Which of these is a mammal?\nwhale\nshark\ntrout and salmon"
    once = perturb_text(text, seed=0, index=3)
    assert once == perturb_text(text, seed=0, index=3)
    assert once != text
    assert sorted(once.split()) == sorted(text.split())
    assert [c for c in once if c.isspace()] == [c for c in text if c.isspace()]
    variants = {perturb_text(text, seed=s, index=3) for s in range(10)}
    assert len(variants) > 1  # the seed matters
    assert perturb_text("single", seed=0, index=0) == "single"


def test_script_end_to_end_on_twenty_arc_items(tiny, tmp_path):
    out = tmp_path / "check"
    args = ["--model", tiny[2], "--benchmark", ARC, "--limit", "20", "--out-dir", str(out), "--batch-size", "8"]
    result = run_script([sys.executable, script("run_contamination_check.py"), *args], cwd=str(tmp_path))
    assert result.returncode == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_members"] == summary["n_non_members"] == 20 and summary["k"] == 0.2
    for method in ("min_k", "min_k_plus_plus"):
        assert 0.0 <= summary["auc"][method] <= 1.0
    assert "no universal threshold" in summary["threshold"]
    assert "no universal threshold" in result.stdout
    for side in ("members", "non-members"):  # a progress bar for each side, counting texts
        assert re.search(rf"{side}: 100%.*20/20 \[", result.stderr), result.stderr[-2000:]
    assert summary["scoring_seconds"] > 0 and summary["texts_per_second"] > 0 and "peak_gpu_memory_gib" not in summary
    assert f"Scored 40 texts in {summary['scoring_seconds']} s" in (out / "README.md").read_text()
    quiet = run_script([sys.executable, script("run_contamination_check.py"), *args, "--no-show-progress"],
                       cwd=str(tmp_path))  # fmt: skip
    assert quiet.returncode == 0 and "members:" not in quiet.stderr, quiet.output[-2000:]
    assert "no universal threshold" in (out / "README.md").read_text()
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["member"] for r in rows] == [True] * 20 + [False] * 20
    assert all(isinstance(r["min_k"], float) and isinstance(r["min_k_plus_plus"], float) for r in rows)
    assert (out / "min_k_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def contaminate(model_dir: str, texts: list[str], out_dir: str, steps: int = 24, max_length: int = 64) -> str:
    """A copy of the tiny model trained on ``texts`` (plain causal LM loss on their first ``max_length`` tokens,
    three passes for eight texts): a model that has seen them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        ids = torch.tensor([tokenizer(texts[step % len(texts)])["input_ids"][:max_length]])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def test_a_model_trained_on_the_members_separates_them_from_held_out_items(tiny, tmp_path):
    from evaluation.contamination_check import ContaminationCheck, read_texts, run_contamination_check

    items = [text for _, text in read_texts(ARC, "text", 16)]
    members, held_out = items[:8], items[8:]
    (tmp_path / "members.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in members))
    (tmp_path / "held_out.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in held_out))
    seen = contaminate(tiny[2], members, str(tmp_path / "seen"))
    check = ContaminationCheck(
        model=seen,
        benchmark=str(tmp_path / "members.jsonl"),
        comparison=str(tmp_path / "held_out.jsonl"),
        out_dir=str(tmp_path / "out"),
        max_length=64,  # the tokens it was trained on
    )
    summary = run_contamination_check(check)
    assert summary["n_members"] == summary["n_non_members"] == 8
    assert summary["auc"]["min_k"] == 1.0 and summary["auc"]["min_k_plus_plus"] >= 0.9, summary["auc"]
    assert summary["non_members"] == str(tmp_path / "held_out.jsonl")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_text_field", ["no_text.jsonl line 1", "'text'", "--text-field"]),
        ("empty_file", ["empty.jsonl: no items"]),
        ("k_zero", ["--k 0.0", "(0, 1]"]),
        ("k_above_one", ["--k 1.5", "(0, 1]"]),
        ("missing_model", ["--model", "no-such-model", "no such model directory"]),
        ("missing_comparison", ["nowhere.jsonl: no such file"]),
        ("cuda_without_gpu", ["--device cuda", "no CUDA device"]),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(tiny, tmp_path, case, expected):
    import torch

    if case == "cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (tmp_path / "no_text.jsonl").write_text(json.dumps({"id": "a", "question": "Why?"}) + "\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    args = {"model": tiny[2], "benchmark": ARC, "limit": "2", "out-dir": str(tmp_path / "out")}
    args.update(
        {
            "no_text_field": {"benchmark": str(tmp_path / "no_text.jsonl")},
            "empty_file": {"benchmark": str(tmp_path / "empty.jsonl")},
            "k_zero": {"k": "0"},
            "k_above_one": {"k": "1.5"},
            "missing_model": {"model": str(tmp_path / "no-such-model")},
            "missing_comparison": {"comparison": str(tmp_path / "nowhere.jsonl")},
            "cuda_without_gpu": {"device": "cuda"},
        }[case]
    )
    argv = [part for key, value in args.items() for part in (f"--{key}", value)]
    result = run_script([sys.executable, script("run_contamination_check.py"), *argv], cwd=str(tmp_path))
    assert result.returncode == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for part in expected:
        assert part in errors[0], errors[0]
    assert not (tmp_path / "out" / "summary.json").exists()
