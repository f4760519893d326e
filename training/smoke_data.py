"""Small local chat and preference datasets with a learnable signal, for demos and tests.

The examples are simple facts a tiny model can pick up in a few hundred steps (arithmetic, word
reversal, counting, capitals), so a smoke run shows a falling SFT loss and DPO reward accuracy above
chance. Preference pairs contrast the right answer (chosen) with a wrong one (rejected).
"""

from __future__ import annotations

import os
import random

from distill_core.jsonl import write_jsonl_atomic

_CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Chile", "Santiago"),
    ("Greece", "Athens"),
    ("India", "New Delhi"),
    ("Poland", "Warsaw"),
    ("Cuba", "Havana"),
    ("Ireland", "Dublin"),
]
_WORDS = [
    "apple",
    "river",
    "garden",
    "planet",
    "silver",
    "window",
    "candle",
    "forest",
    "market",
    "rocket",
    "violin",
    "pepper",
    "island",
    "ladder",
    "mirror",
    "orange",
    "pencil",
    "tunnel",
    "wizard",
    "yellow",
]
_SYSTEMS = ["You are a helpful assistant.", "You are a concise assistant. Answer in one sentence.", ""]


def _task(rng: random.Random) -> tuple[str, str, str]:
    """One (question, right answer, wrong answer)."""
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(1, 40), rng.randint(1, 40)
        wrong = a + b + rng.choice([-3, -2, -1, 1, 2, 3])
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {wrong}."
    if kind == 1:
        w = rng.choice(_WORDS)
        scrambled = "".join(rng.sample(w, len(w)))
        if scrambled == w[::-1]:
            scrambled = w
        return (
            f"Spell the word '{w}' backwards.",
            f"'{w}' backwards is '{w[::-1]}'.",
            f"'{w}' backwards is '{scrambled}'.",
        )
    if kind == 2:
        w = rng.choice(_WORDS)
        return (
            f"How many letters are in the word '{w}'?",
            f"The word '{w}' has {len(w)} letters.",
            f"The word '{w}' has {len(w) + rng.choice([-2, -1, 1, 2])} letters.",
        )
    country, capital = rng.choice(_CAPITALS)
    other = rng.choice([c for _, c in _CAPITALS if c != capital])
    return (
        f"What is the capital of {country}?",
        f"The capital of {country} is {capital}.",
        f"The capital of {country} is {other}.",
    )


def _dialogue(rng: random.Random, turns: int) -> tuple[list[dict], str, str]:
    system = rng.choice(_SYSTEMS)
    messages = [{"role": "system", "content": system}] if system else []
    for t in range(turns):
        q, right, wrong = _task(rng)
        messages.append({"role": "user", "content": q})
        if t < turns - 1:
            messages.append({"role": "assistant", "content": right})
    return messages, right, wrong


def build_smoke_datasets(
    out_dir: str, n_sft: int = 2048, n_pref: int = 2048, n_test: int = 32, seed: int = 0
) -> dict[str, str]:
    """Write ``sft/{train,test}.jsonl`` and ``prefs/{train,test}.jsonl`` under out_dir. Returns their dirs."""
    rng = random.Random(seed)
    paths = {}
    for name, n in (("sft", n_sft), ("prefs", n_pref)):
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        for split, count in (("train", n), ("test", n_test)):
            rows = []
            for _ in range(count):
                messages, right, wrong = _dialogue(rng, turns=rng.choice([1, 1, 2]))
                if name == "sft":
                    rows.append({"messages": messages + [{"role": "assistant", "content": right}]})
                else:
                    rows.append(
                        {
                            "prompt": messages,
                            "chosen": [{"role": "assistant", "content": right}],
                            "rejected": [{"role": "assistant", "content": wrong}],
                            "score_chosen": 9.0,
                            "score_rejected": 2.0,
                        }
                    )
            write_jsonl_atomic(os.path.join(d, f"{split}.jsonl"), rows)
        paths[name] = d
    return paths


def corpus_lines(seed: int = 1, n: int = 2000) -> list[str]:
    """Plain text for training a tiny tokenizer: the same vocabulary the smoke datasets use."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        q, right, wrong = _task(rng)
        lines += [q, right, wrong]
    lines += [s for s in _SYSTEMS if s]
    lines += ["<|system|>", "<|user|>", "<|assistant|>"]
    return lines
