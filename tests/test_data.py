"""Dataset mixtures: weights, seeds, and test data kept out of training."""

from __future__ import annotations

import json

import pytest

from distill_core.errors import DataError
from training.columns import SFT_LAYOUTS
from training.data import load_mixture
from training.mixture import parse_mixture


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _conv(tag, i):
    return {
        "messages": [
            {"role": "user", "content": f"{tag} question {i}"},
            {"role": "assistant", "content": f"{tag} {i}"},
        ]
    }


@pytest.fixture
def two_sources(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    _write(a / "train.jsonl", [_conv("a", i) for i in range(40)])
    _write(a / "test.jsonl", [_conv("a-test", i) for i in range(5)])
    b = _write(tmp_path / "b.jsonl", [_conv("b", i) for i in range(10)])
    return str(a), b


def test_weights_seed_and_test_split(two_sources):
    a, b = two_sources
    raw = {
        "datasets": [{"id": a, "split": "train", "test_split": "test", "weight": 0.5}, {"id": b, "weight": 2.0}],
        "seed": 7,
    }
    train, test = load_mixture(parse_mixture(raw, "r.yaml"), SFT_LAYOUTS, "SFT")
    texts = [row["messages"][0]["content"] for row in train]
    assert len(train) == 20 + 20  # half of a, b twice
    assert sum(t.startswith("a ") for t in texts) == 20 and sum(t.startswith("b ") for t in texts) == 20
    assert len(test) == 5 and not any("a-test" in t for t in texts), "test data never enters training"
    again, _ = load_mixture(parse_mixture(raw, "r.yaml"), SFT_LAYOUTS, "SFT")
    assert [row["messages"][0]["content"] for row in again] == texts, "a fixed seed gives the same mixture"
    other, _ = load_mixture(parse_mixture({**raw, "seed": 8}, "r.yaml"), SFT_LAYOUTS, "SFT")
    assert [row["messages"][0]["content"] for row in other] != texts


def test_test_split_size_carves_disjoint_eval(two_sources):
    _, b = two_sources
    train, test = load_mixture(
        parse_mixture({"datasets": [{"id": b}], "test_split_size": 0.2}, "r.yaml"), SFT_LAYOUTS, "SFT"
    )
    assert len(train) == 8 and len(test) == 2
    assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in test}


def test_missing_split_is_a_one_line_data_error(two_sources):
    a, _ = two_sources
    with pytest.raises(DataError, match="has no split 'validation'"):
        load_mixture(parse_mixture({"datasets": [{"id": a, "split": "validation"}]}, "r.yaml"), SFT_LAYOUTS, "SFT")


def test_hub_dataset_without_network_is_a_one_line_data_error():
    mixture = parse_mixture({"datasets": [{"id": "HuggingFaceH4/ultrachat_200k", "split": "train_sft"}]}, "r.yaml")
    with pytest.raises(
        DataError, match=r"r.yaml: could not load dataset 'HuggingFaceH4/ultrachat_200k' split 'train_sft'"
    ):
        load_mixture(mixture, SFT_LAYOUTS, "SFT")


def test_a_directory_of_split_files_is_read_by_split_name_and_anew_when_rewritten(tmp_path):
    """The layout a decontaminate stage writes (clean/train_sft.jsonl): hub split names, and no stale cache."""
    clean = tmp_path / "clean"
    clean.mkdir()
    _write(clean / "train_sft.jsonl", [_conv("train", i) for i in range(6)])
    _write(clean / "train.jsonl", [_conv("other", i) for i in range(3)])  # not mixed into train_sft, nor it into this
    _write(clean / "test_sft.jsonl", [_conv("test", i) for i in range(2)])
    raw = {"datasets": [{"id": str(clean), "split": "train_sft", "test_split": "test_sft"}]}
    train, test = load_mixture(parse_mixture(raw, "r.yaml"), SFT_LAYOUTS, "SFT")
    assert (len(train), len(test)) == (6, 2)
    assert {r["messages"][1]["content"].split()[0] for r in train} == {"train"}
    plain, _ = load_mixture(parse_mixture({"datasets": [{"id": str(clean)}]}, "r.yaml"), SFT_LAYOUTS, "SFT")
    assert len(plain) == 3
    _write(clean / "train_sft.jsonl", [_conv("rerun", i) for i in range(4)])  # a rerun of the stage
    again, _ = load_mixture(parse_mixture(raw, "r.yaml"), SFT_LAYOUTS, "SFT")
    assert {r["messages"][1]["content"].split()[0] for r in again} == {"rerun"} and len(again) == 4
