"""Local copies of the two Zephyr datasets in their published hub layout and schemas (the hub is not reachable).

Each is a dataset repository as ``datasets.load_dataset(DIR, split=...)`` reads it: a README.md whose YAML header
maps the custom split names to ``data/<split>-*.parquet`` files, exactly like the hub repositories:

- ``HuggingFaceH4/ultrachat_200k``: splits train_sft, test_sft, train_gen, test_gen; columns ``prompt`` (string),
  ``prompt_id`` (string), ``messages`` (list of {role, content}, user first, alternating);
- ``HuggingFaceH4/ultrafeedback_binarized``: splits train_prefs, test_prefs, train_sft, test_sft, train_gen,
  test_gen; columns ``prompt`` (string), ``prompt_id``, ``chosen`` and ``rejected`` (the whole conversation: the user
  turn then the answer), ``messages``, ``score_chosen`` and ``score_rejected`` (floats).

The text is drawn from the smoke tasks so the tiny tokenizer knows it; a few dialogues and prompts are made long on
purpose, so packing tails and the prompt cap are exercised.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Callable

from training.smoke_data import _task

ULTRACHAT = "HuggingFaceH4/ultrachat_200k"
ULTRAFEEDBACK = "HuggingFaceH4/ultrafeedback_binarized"


def _prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _long_question(rng: random.Random, parts: int) -> str:
    return " ".join(_task(rng)[0] for _ in range(parts))


def _dialogue(rng: random.Random, turns: int, long: bool) -> list[dict]:
    messages = []
    for t in range(turns):
        question, right, _ = _task(rng)
        if long and t == 0:
            question = _long_question(rng, 40)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": right}]
    return messages


def _ultrachat_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        messages = _dialogue(rng, rng.choice([1, 2, 3]), long=(i % 8 == 0))
        rows.append(
            {"prompt": messages[0]["content"], "prompt_id": _prompt_id(messages[0]["content"]), "messages": messages}
        )
    return rows


def _ultrafeedback_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        question, right, wrong = _task(rng)
        if i % 6 == 0:
            question = _long_question(rng, 60)  # a prompt far over any small max_prompt_length
        user = {"role": "user", "content": question}
        chosen = [user, {"role": "assistant", "content": right}]
        rejected = [user, {"role": "assistant", "content": wrong}]
        rows.append(
            {
                "prompt": question,
                "prompt_id": _prompt_id(question),
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": float(rng.choice([8.0, 9.0, 10.0])),
                "score_rejected": float(rng.choice([2.0, 3.5, 5.0])),
            }
        )
    return rows


def _write_repo(root: str, name: str, splits: dict[str, list[dict]], features) -> str:
    import datasets

    repo = os.path.join(root, name)
    os.makedirs(os.path.join(repo, "data"), exist_ok=True)
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, rows in splits.items():
        datasets.Dataset.from_list(rows, features=features).to_parquet(
            os.path.join(repo, "data", f"{split}-00000-of-00001.parquet")
        )
        lines += [f"  - split: {split}", f"    path: data/{split}-*"]
    lines += ["---", "", f"# {name} (a small local copy in the published schema)", ""]
    with open(os.path.join(repo, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return repo


def build_zephyr_datasets(
    root: str, n_train: int = 48, n_test: int = 8, seed: int = 0, edit: Callable[[str, dict], None] | None = None
) -> dict[str, str]:
    """Write both repositories under root (root/HuggingFaceH4/...). Returns their directories.

    ``edit(repo id, {split: rows})``, when given, may change the rows before they are written (plant text in them).
    ``datasets`` keys its cache of such a directory by its README header alone, whatever the rows: read an edited
    copy under a cache of its own (HF_DATASETS_CACHE), or another copy's rows come back.
    """
    from datasets import Features, List, Value

    rng = random.Random(seed)
    message = {"content": Value("string"), "role": Value("string")}
    chat = Features({"prompt": Value("string"), "prompt_id": Value("string"), "messages": List(message)})
    prefs = Features(
        {
            "prompt": Value("string"),
            "prompt_id": Value("string"),
            "chosen": List(message),
            "rejected": List(message),
            "messages": List(message),
            "score_chosen": Value("float64"),
            "score_rejected": Value("float64"),
        }
    )
    chat_rows = {
        s: _ultrachat_rows(rng, n)
        for s, n in (("train_sft", n_train), ("test_sft", n_test), ("train_gen", n_test), ("test_gen", n_test))
    }
    pref_rows = {s: _ultrafeedback_rows(rng, n) for s, n in (("train_prefs", n_train), ("test_prefs", n_test))}
    pref_rows.update({s: _ultrachat_rows(rng, n_test) for s in ("train_sft", "test_sft", "train_gen", "test_gen")})
    for split in ("train_sft", "test_sft", "train_gen", "test_gen"):  # the SFT splits carry chosen/rejected too
        pref_rows[split] = [
            {**row, "chosen": row["messages"], "rejected": row["messages"], "score_chosen": 0.0, "score_rejected": 0.0}
            for row in pref_rows[split]
        ]
    if edit is not None:
        edit(ULTRACHAT, chat_rows)
        edit(ULTRAFEEDBACK, pref_rows)
    return {
        ULTRACHAT: _write_repo(root, ULTRACHAT, chat_rows, chat),
        ULTRAFEEDBACK: _write_repo(root, ULTRAFEEDBACK, pref_rows, prefs),
    }
