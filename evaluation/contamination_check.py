"""A model-level contamination check as a run: benchmark items against non-members, scored by Min-K% Prob and
Min-K%++ (evaluation.min_k), written as scores.jsonl, summary.json, a histogram and a card.

Members are the first ``limit`` items of a benchmark JSONL (their ``text`` field): the candidates the model may
have seen. Non-members are either a comparison JSONL of held-out text of the same kind (its first ``limit``
items), or, without one, each item perturbed by seeded local word swaps: the item's words (whitespace kept in
place) with round(swap_fraction * words) randomly chosen neighbours swapped, at least one, from a generator seeded
by (seed, item index). The swaps keep every word and the item's length, so the two sides differ in word order only;
but a swap also makes the text less fluent, which lowers its scores under any model, seen or not. An AUC against
perturbed items is therefore an upper bound on membership signal; held-out text of the same kind is the fairer
comparison.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl, write_jsonl_atomic
from distill_core.records import file_sha256, hub_repo_id, write_atomic, write_card, write_manifest

from .min_k import NO_THRESHOLD, auc, min_k_plus_plus, min_k_prob, token_log_probs

METHODS = {"min_k": "Min-K% Prob", "min_k_plus_plus": "Min-K%++"}


@dataclass
class ContaminationCheck:
    model: str = field(metadata={"help": "A local model directory (or hub id) of a causal LM."})
    benchmark: str = field(metadata={"help": "Benchmark JSONL: the member candidates."})
    out_dir: str = field(metadata={"help": "Where scores.jsonl, summary.json, the histogram and the card go."})
    text_field: str = field(default="text", metadata={"help": "The field holding each item's text."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N items of each file."})
    comparison: str | None = field(default=None, metadata={"help": "Held-out JSONL; else perturbed items."})
    k: float = field(default=0.2, metadata={"help": "The fraction of lowest tokens averaged, in (0, 1]."})
    seed: int = field(default=0, metadata={"help": "Seed of the perturbations."})
    swap_fraction: float = field(default=0.2, metadata={"help": "Share of words swapped with a neighbour."})
    batch_size: int = field(default=8, metadata={"help": "Texts per forward pass."})
    max_length: int = field(default=1024, metadata={"help": "Tokens kept per text (special tokens included)."})
    dtype: Literal["auto", "bf16", "fp32"] = field(default="auto", metadata={"help": "auto: bf16 on CUDA, else fp32."})
    device: str = field(default="auto", metadata={"help": "auto: cuda when available, else cpu."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar over the texts scored."})

    def __post_init__(self):
        if not 0 < self.k <= 1:
            raise RecipeError(f"--k {self.k}: give a fraction in (0, 1], e.g. 0.2 for the lowest 20% of tokens")
        if self.limit is not None and self.limit < 1:
            raise RecipeError(f"--limit {self.limit}: give 1 or more items (or leave it out for all)")
        if self.batch_size < 1 or self.max_length < 2:
            raise RecipeError("--batch-size must be 1 or more and --max-length 2 or more")
        if not 0 < self.swap_fraction <= 1:
            raise RecipeError(f"--swap-fraction {self.swap_fraction}: give a fraction in (0, 1]")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise RecipeError(f"--dtype {self.dtype}: choose auto, bf16 or fp32")
        if not os.path.exists(self.model) and hub_repo_id(self.model) is None:
            raise RecipeError(f"--model {self.model}: no such model directory; give a saved causal LM's directory")


def read_texts(path: str, text_field: str, limit: int | None) -> list[tuple[str, str]]:
    """(id, text) of the first ``limit`` rows of a JSONL file; ``id`` is the row's id or its line number."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; give a JSONL file with a {text_field!r} field per line")
    items = []
    for n, row in read_jsonl(path):
        text = row.get(text_field)
        if not isinstance(text, str) or not text.strip():
            found = "lacks it" if text_field not in row else "has an empty or non-string one"
            raise DataError(
                f"{path} line {n}: field {text_field!r} {found}; every line needs a non-empty {text_field!r} "
                f"string (name another field with --text-field; this line has {sorted(row)})"
            )
        items.append((str(row.get("id", f"line {n}")), text))
        if limit is not None and len(items) == limit:
            break
    if not items:
        raise DataError(f"{path}: no items; give a JSONL file with one {{{text_field!r}: ...}} object per line")
    return items


def perturb_text(text: str, seed: int, index: int, swap_fraction: float = 0.2) -> str:
    """The text with round(swap_fraction * words) (at least one) random adjacent word pairs swapped, whitespace
    kept in place; the generator is seeded by (seed, index), so a rerun perturbs identically."""
    parts = re.split(r"(\s+)", text)
    words = parts[0::2]
    if len(words) < 2:
        return text
    rng = random.Random(f"min-k perturbation {seed} {index}")
    for position in rng.sample(range(len(words) - 1), max(1, round(swap_fraction * len(words)))):
        words[position], words[position + 1] = words[position + 1], words[position]
    parts[0::2] = words
    return "".join(parts)


def non_members(check: ContaminationCheck, members: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if check.comparison is not None:
        return read_texts(check.comparison, check.text_field, check.limit)
    return [
        (f"{item_id} (perturbed)", perturb_text(text, check.seed, index, check.swap_fraction))
        for index, (item_id, text) in enumerate(members)
    ]


def load_model(check: ContaminationCheck):
    """(model, tokenizer, device, dtype) as the check runs them; a model that does not load is one line."""
    import torch
    from transformers import AutoTokenizer

    from distill_core.errors import first_line
    from training.model import load_causal_lm

    device = check.device if check.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"--device {device}: this machine has no CUDA device; use --device auto or cpu")
    dtype = check.dtype if check.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    try:
        tokenizer = AutoTokenizer.from_pretrained(check.model)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"--model {check.model}: could not load its tokenizer: {first_line(exc)}") from None
    init = {"dtype": torch.bfloat16 if dtype == "bf16" else torch.float32}
    if device != "cpu":
        init["device_map"] = device  # loaded straight onto the device, not through host memory first
    model = load_causal_lm(check.model, init)
    return model.to(device).eval(), tokenizer, device, dtype


def score_items(check: ContaminationCheck, model, tokenizer, items: list[tuple[str, str]], member: bool) -> list:
    token_scores = token_log_probs(
        model,
        tokenizer,
        [text for _, text in items],
        batch_size=check.batch_size,
        max_length=check.max_length,
        progress=("members" if member else "non-members") if check.show_progress else None,
    )
    return [
        {
            "id": item_id,
            "member": member,
            "min_k": min_k_prob(scores, check.k),
            "min_k_plus_plus": min_k_plus_plus(scores, check.k),
            "scored_tokens": len(scores.log_probs),
            "truncated": scores.truncated,
        }
        for (item_id, _), scores in zip(items, token_scores)
    ]


def summarize(check: ContaminationCheck, rows: list[dict], device: str, dtype: str, seconds: float) -> dict:
    split = {m: ([r[m] for r in rows if r["member"]], [r[m] for r in rows if not r["member"]]) for m in METHODS}
    return {
        "model": check.model,
        "benchmark": check.benchmark,
        "non_members": check.comparison or f"perturbed items (seed {check.seed}, swap fraction {check.swap_fraction})",
        "n_members": len(split["min_k"][0]),
        "n_non_members": len(split["min_k"][1]),
        "k": check.k,
        "auc": {m: auc(*split[m]) for m in METHODS},
        "truncated": sum(r["truncated"] for r in rows),
        "max_length": check.max_length,
        "device": device,
        "dtype": dtype,
        "scoring_seconds": round(seconds, 2),
        "texts_per_second": round(len(rows) / seconds, 1) if seconds > 0 else None,
        "threshold": NO_THRESHOLD,
    }


def plot_histograms(rows: list[dict], summary: dict, path: str) -> str:
    """Both score distributions, members against non-members, one panel per method, the AUC in each title."""
    from matplotlib.ticker import MaxNLocator

    from .figures import BLUE, RED, pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for ax, (method, name) in zip(axes, METHODS.items()):
        members = [r[method] for r in rows if r["member"]]
        others = [r[method] for r in rows if not r["member"]]
        low, high = min(members + others), max(members + others)
        bins = [low + (high - low) * i / 30 for i in range(31)] if high > low else 10
        ax.hist(members, bins=bins, alpha=0.6, color=BLUE, label=f"members (benchmark, n={len(members)})")
        ax.hist(others, bins=bins, alpha=0.6, color=RED, label=f"non-members (n={len(others)})")
        ax.set_title(f"{name}, k = {summary['k']:g}: AUC {summary['auc'][method]:.3f}")
        ax.set_xlabel("score (higher = more likely seen)")
        ax.set_ylabel("texts")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Contamination check: no universal threshold, compare the two distributions", fontsize=12)
    return save(fig, path)


def card_body(summary: dict) -> str:
    lines = [
        "# Model-level contamination check",
        "",
        f"Model `{summary['model']}` scored on `{summary['benchmark']}` ({summary['n_members']} member candidates) "
        f"against {summary['non_members']} ({summary['n_non_members']} non-members), k = {summary['k']:g}, "
        f"{summary['dtype']} on {summary['device']}, texts cut to {summary['max_length']} tokens "
        f"({summary['truncated']} were).",
        "",
        f"Scored {summary['n_members'] + summary['n_non_members']} texts in {summary['scoring_seconds']} s "
        f"({summary['texts_per_second']} texts/s)"
        + (f"; peak GPU memory {summary['peak_gpu_memory_gib']} GiB." if "peak_gpu_memory_gib" in summary else "."),
        "",
        "| method | AUC (members vs non-members) |",
        "| --- | --- |",
        *(f"| {name} | {summary['auc'][m]:.4f} |" for m, name in METHODS.items()),
        "",
        f"**{summary['threshold']}** An AUC near 0.5 shows no membership signal; against perturbed items a high AUC "
        "also reflects the perturbation's lost fluency, so held-out text of the same kind is the fairer comparison.",
        "",
        "Files: `scores.jsonl` (per text: both scores and the member flag), `summary.json`, `min_k_histogram.png`.",
    ]
    return "\n".join(lines) + "\n"


def run_contamination_check(check: ContaminationCheck) -> dict:
    """Score, then write scores.jsonl, summary.json, min_k_histogram.png, manifest.json and README.md."""
    from huggingface_hub import ModelCardData

    members = read_texts(check.benchmark, check.text_field, check.limit)
    others = non_members(check, members)
    model, tokenizer, device, dtype = load_model(check)
    started = time.perf_counter()
    rows = score_items(check, model, tokenizer, members, True) + score_items(check, model, tokenizer, others, False)
    summary = summarize(check, rows, device, dtype, time.perf_counter() - started)
    if device.startswith("cuda"):
        import torch

        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    os.makedirs(check.out_dir, exist_ok=True)
    write_jsonl_atomic(os.path.join(check.out_dir, "scores.jsonl"), rows)
    write_atomic(os.path.join(check.out_dir, "summary.json"), json.dumps(summary, indent=2) + "\n")
    plot_histograms(rows, summary, os.path.join(check.out_dir, "min_k_histogram.png"))
    inputs = [p for p in (check.benchmark, check.comparison) if p]
    write_manifest(
        check.out_dir, "contamination_check", config=asdict(check), inputs={p: file_sha256(p) for p in inputs}
    )
    write_card(
        check.out_dir,
        ModelCardData(base_model=hub_repo_id(check.model), tags=["contamination-check"]),
        card_body(summary),
    )
    return summary
