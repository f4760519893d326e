"""N-gram decontamination: planted benchmark items are found and removed, nothing else is; normalisation and
n-gram edge cases; agreement with the plain set-of-n-grams reference; the script's outputs, gate and bad input."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import sys
import time
import weakref

import pytest
from conftest import SHARED_DATA, run_script, script

from decontamination import scan
from decontamination.benchmarks import BenchmarkItem, BenchmarkSource, load_benchmark
from decontamination.chunks import join_texts, normalized_chunk
from decontamination.index import BenchmarkIndex
from decontamination.normalize import Normalization, words
from decontamination.reference import reference_index, reference_matches
from decontamination.scan import Options, clean_rows, decontaminate

BENCH = os.path.join(SHARED_DATA, "benchmarks")
SMALL = ("arc_challenge", "gsm8k", "truthfulqa", "winogrande")


@pytest.fixture(scope="module")
def items():
    out = []
    for name in SMALL:
        out += load_benchmark(BenchmarkSource(name, os.path.join(BENCH, f"{name}.jsonl")), "test")
    return out


@pytest.fixture(scope="module")
def index(items):
    return BenchmarkIndex.build(items, 13, Normalization())


def _vocabulary() -> list[str]:
    seeds = [json.loads(line) for line in open(os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl"))]
    vocab = sorted({w for s in seeds for w in json.dumps(s).split() if w.isalpha()})
    return vocab


def _clean_rows(count: int, seed: int = 0) -> list[dict]:
    """UltraChat-shaped rows of random seed-task words: random 13-word sequences appear in no benchmark."""
    rng, vocab = random.Random(seed), _vocabulary()
    rows = []
    for i in range(count):
        user = " ".join(rng.choices(vocab, k=rng.randint(15, 40)))
        reply = " ".join(rng.choices(vocab, k=rng.randint(40, 120))) + "."
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        rows.append({"prompt": user, "prompt_id": f"p{i}", "messages": messages})
    return rows


def _plant(text: str, kind: int, rng: random.Random) -> str:
    if kind == 0:
        return text
    if kind == 1:  # case and punctuation changed
        return text.upper().replace(".", "!").replace(" ", " , ", 3).replace("?", " ?!")
    return "Here is something I read, can you explain it? " + text + " Thanks a lot for your help!"


def test_planted_items_are_all_removed_and_nothing_else(items, index):
    rng = random.Random(1)
    rows = _clean_rows(3000)
    long_items = [it for it in items if len(words(it.text)) >= 13]
    planted = {}
    for k, item in enumerate(rng.sample(long_items, 50)):
        at = rng.randrange(len(rows))
        while at in planted:
            at = rng.randrange(len(rows))
        turn = 1 if k % 5 == 4 else 0  # most in the user turn, some in the reply
        rows[at]["messages"][turn]["content"] = _plant(item.text, k % 3, rng)
        planted[at] = item.item_id
    result = decontaminate(rows, index, Options(check="both", workers=2), "test")
    found = {r["row_index"]: {m["item_id"] for m in r["matches"]} for r in result.removed}
    assert set(found) == set(planted)  # every plant, and no clean row
    assert all(planted[at] in found[at] for at in planted)  # (Winogrande's twin items share text: both match)
    assert result.kept == 3000 - 50
    assert list(clean_rows(rows, result.removed)) == [row for i, row in enumerate(rows) if i not in planted]
    assert sum(e["rows_removed"] for e in result.report.values()) == 50
    example = result.removed[0]["matches"][0]
    assert "**" in example["excerpt"] and len(example["span"].split()) >= 13


def test_check_user_ignores_assistant_turns(index, items):
    item = next(it for it in items if len(words(it.text)) >= 20)
    rows = [{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": item.text}]}]
    assert len(decontaminate(rows, index, Options(check="user"), "t").removed) == 0
    assert len(decontaminate(rows, index, Options(check="assistant"), "t").removed) == 1


def test_normalisation_unicode_and_punctuation():
    how = Normalization()
    assert words("Ｊａｎｅｔ’s  DUCKS—lay\u00a016 eggs!", how) == ["janets", "duckslay", "16", "eggs"]
    assert words("Café, naïve.", how) == ["café", "naïve"]
    assert words("A.B", Normalization(strip_punctuation=False, lowercase=False)) == ["A.B"]
    item = BenchmarkItem("b", "1", "The quick brown fox jumps over the lazy dog near the old river bank today")
    index = BenchmarkIndex.build([item], 13, how)
    text = "THE QUICK, BROWN FOX — JUMPS OVER THE LAZY DOG; NEAR THE OLD RIVER BANK"
    assert [m.coverage for m in index.verify(text)] == [14 / 15]  # 14 of the item's 15 words


def test_items_shorter_than_n_are_counted_not_matched():
    short = BenchmarkItem("b", "short", "Which of these is a mammal?")
    index = BenchmarkIndex.build([short], 8, Normalization())
    assert index.too_short == {"b": 1} and index.ngram_count == 0
    result = decontaminate([{"prompt": "Which of these is a mammal? A whale."}], index, Options(), "t")
    assert result.removed == [] and result.report["b"]["too_short"] == 1


def test_repeated_ngrams_and_turn_boundaries():
    text = "one two three four one two three four five"
    index = BenchmarkIndex.build([BenchmarkItem("b", "r", text)], 3, Normalization())
    match = index.verify("xx one two three yy")[0]
    assert match.coverage == 6 / 9  # "one two three" occurs twice in the item: both places are covered
    rows = [{"messages": [{"role": "user", "content": "x one two"}, {"role": "assistant", "content": "three y"}]}]
    assert decontaminate(rows, index, Options(), "t").removed == []  # no n-gram spans two turns


def test_coverage_rule_threshold():
    item = BenchmarkItem("b", "i", " ".join(f"w{i}" for i in range(20)))
    index = BenchmarkIndex.build([item], 5, Normalization())
    half = {"prompt": "intro " + " ".join(f"w{i}" for i in range(10)) + " outro"}
    assert decontaminate([half], index, Options(rule="coverage", threshold=0.5), "t").removed != []
    assert decontaminate([half], index, Options(rule="coverage", threshold=0.6), "t").removed == []
    assert decontaminate([half], index, Options(rule="ngram"), "t").removed != []


def test_agrees_with_set_of_ngrams_reference():
    rng = random.Random(7)
    vocab = [f"v{i}" for i in range(30)] + ["Ünï", "ĳ", "x-y"]
    for n in (3, 4, 8):
        item_texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 30))) for _ in range(60)]
        texts = [" ".join(rng.choices(vocab, k=rng.randint(0, 60))) for _ in range(300)]
        how = Normalization()
        index = BenchmarkIndex.build([BenchmarkItem("b", str(i), t) for i, t in enumerate(item_texts)], n, how)
        fast = {(t, m.item) for t, text in enumerate(texts) for m in index.verify(text)}
        assert fast == reference_matches(texts, reference_index(item_texts, n, how), n, how)
        flagged = set(index.flag(texts).tolist())
        assert {t for t, _ in fast} <= flagged


def test_chunk_normalisation_is_normalize_text_by_text():
    """The scan normalises a whole chunk at once, replacing each non-ASCII character on its own where that cannot
    depend on its neighbours: the words must be those of ``normalize``, text by text, for any text."""
    pool = [*"abcXYZ 019.,;!?'\"-\t\n", "é", "É", "e\u0301", "\u0301", "\u0327", "´", "¨", "½", "…", "\u00a0", "ﬁ",
            "Ｊ", "İ", "Σ", "σ", "ς", "ß", "ẞ", "K", "Ω", "ㅏ", "\u1100", "\u1161", "\u11a8", "가", "\u0f73",
            "\u0bbe", "\u0b92", "’", "“", "—", "²", "µ", "ǅ", "\u2028", "\u3000", "\ud800", "ᾼ", "\u0345", "Å",
            "A\u030a", "\u212b", "😀", "日本"]  # fmt: skip
    rng = random.Random(3)
    for how in (Normalization(), Normalization(unicode_form="NFC"), Normalization(unicode_form="none"),
                Normalization(lowercase=False), Normalization(strip_punctuation=False)):  # fmt: skip
        for _ in range(150):
            texts = ["".join(rng.choices(pool, k=rng.randint(0, 25))) for _ in range(rng.randint(1, 12))]
            chunk = normalized_chunk(join_texts(texts), how).decode("utf-8", "surrogatepass").split(" \x01 ")
            assert chunk[-1] == "" and len(chunk) == len(texts) + 1
            assert [c.split() for c in chunk[:-1]] == [words(t, how) for t in texts], (how, texts)


def test_a_text_holding_the_chunk_separator_is_still_checked():
    item = BenchmarkItem("b", "i", "one two three four five six")
    index = BenchmarkIndex.build([item], 3, Normalization())
    texts = ["nothing here", "a\x01b one two three", "x \x01 y four five six"]
    assert join_texts(texts) is None
    assert index.flag(texts).tolist() == [1, 2]


class Row(dict):
    """A row that can be watched (a weak reference) to tell how many rows a scan holds at once."""


def test_worker_processes_split_the_scan_without_changing_it(monkeypatch, items, index):
    rng = random.Random(5)
    rows = _clean_rows(600, seed=3)
    long_items = [it for it in items if len(words(it.text)) >= 13]
    for k, at in enumerate(rng.sample(range(600), 12)):
        rows[at]["messages"][1]["content"] += " " + _plant(rng.choice(long_items).text, k % 3, rng)
    single = decontaminate(rows, index, Options(workers=1), "t")
    monkeypatch.setattr(scan, "CHUNK_CHARS", 5_000)
    monkeypatch.setattr(scan, "MIN_CHUNKS_TO_SHARE", 2)
    started, sent = [], []
    real, real_send = multiprocessing.get_context, scan._TextStream._send
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: started.append(method) or real(method))
    monkeypatch.setattr(scan._TextStream, "_send", lambda self, chunk: sent.append(chunk) or real_send(self, chunk))
    shared = decontaminate(iter(rows), index, Options(workers=2), "t")  # a stream, read once
    assert started == ["spawn"] and len(sent) > 20
    assert len(single.removed) == 12 and single.rows == shared.rows == 600
    assert shared.removed == single.removed and shared.report == single.report


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stream_of_rows_is_not_held_whole(monkeypatch, index, workers):
    """Only the chunks in flight are held: a row dropped by the stream's reader is freed before the scan ends."""
    monkeypatch.setattr(scan, "CHUNK_CHARS", 5_000)
    monkeypatch.setattr(scan, "MIN_CHUNKS_TO_SHARE", 2)
    alive, most = [0], [0]

    def freed() -> None:
        alive[0] -= 1

    def stream():
        for row in _clean_rows(3000, seed=4):
            row = Row(row)
            weakref.finalize(row, freed)
            alive[0] += 1
            most[0] = max(most[0], alive[0])
            yield row

    flags = scan._flags

    def slow_consumer(*args):  # the workers outrun the scan that takes their flags, as on a busy machine
        for flagged in flags(*args):
            time.sleep(0.004)
            yield flagged

    monkeypatch.setattr(scan, "_flags", slow_consumer)
    result = decontaminate(stream(), index, Options(workers=workers), "t")
    assert result.rows == 3000 and result.removed == []
    # held whole, 3,000; held here: the rows of the chunks in flight, a chunk being about 8 rows: the one being read,
    # the one consumed and IN_FLIGHT_PER_WORKER a worker sent ahead (8 chunks with 2 workers). Measured: 13 rows
    # alone, 42 with 2 workers, on an idle or a loaded machine; the workers left unchecked held 2,798.
    chunks = 2 + (workers * scan.IN_FLIGHT_PER_WORKER if workers > 1 else 0)
    assert most[0] <= 12 * chunks, (most[0], chunks)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def _recipe(tmp_path, **values):
    values.setdefault("benchmarks", [os.path.join(BENCH, "gsm8k.jsonl")])
    values.setdefault("output_dir", str(tmp_path / "out"))
    (tmp_path / "r.yaml").write_text(json.dumps(values))
    return str(tmp_path / "r.yaml")


def _gsm8k_text(i: int) -> str:
    with open(os.path.join(BENCH, "gsm8k.jsonl")) as f:
        return [json.loads(line)["text"] for _, line in zip(range(i + 1), f)][i]


def test_script_on_ultrafeedback_rows_writes_same_format_and_is_deterministic(tmp_path):
    rows = [{"prompt": f"Question {i} about the weather in town", "prompt_id": str(i),
             "chosen": [{"role": "user", "content": f"Question {i}"}, {"role": "assistant", "content": "Sunny."}],
             "rejected": [{"role": "user", "content": f"Question {i}"}, {"role": "assistant", "content": "No."}],
             "score_chosen": 8.0, "score_rejected": 3.0} for i in range(40)]  # fmt: skip
    rows[5]["chosen"][1]["content"] = "Sure. " + _gsm8k_text(3)
    data = _write_jsonl(tmp_path / "prefs.jsonl", rows)
    recipe = _recipe(tmp_path, dataset=data)
    first = run_script([sys.executable, script("run_decontaminate.py"), recipe], cwd=str(tmp_path))
    assert first.returncode == 0, first.output[-2000:]
    assert re.search(r"decontaminating: 100%.*40(\.0)?/40(\.0)? \[.*row/s", first.stderr), first.stderr[-2000:]
    out = tmp_path / "out"
    clean = [json.loads(line) for line in (out / "clean" / "train.jsonl").read_text().splitlines()]
    assert clean == rows[:5] + rows[6:]
    removed = json.loads((out / "removed" / "train.jsonl").read_text())
    assert removed["row"] == rows[5] and removed["matches"][0]["item_id"] == "gsm8k/test/3"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["report"]["gsm8k"]["items_hit"] == 1 and manifest["counts"]["removed"] == 1
    assert "gsm8k/test/3" in (out / "README.md").read_text()
    before = (out / "clean" / "train.jsonl").read_bytes()
    (out / "clean" / "train.jsonl").write_text("half a line")  # an interrupted write
    again = run_script([sys.executable, script("run_decontaminate.py"), recipe], cwd=str(tmp_path))
    assert again.returncode == 0 and (out / "clean" / "train.jsonl").read_bytes() == before


def test_gate_fails_naming_the_benchmark_and_withdraws_an_earlier_clean_dataset(tmp_path):
    """A breach after a passing run leaves no clean dataset, manifest or card that a later stage could train on."""
    clean_rows = _clean_rows(20)
    data = _write_jsonl(tmp_path / "sft.jsonl", clean_rows)
    command = [sys.executable, script("run_decontaminate.py")]
    gated = _recipe(tmp_path, dataset=data, max_contaminated_fraction=0.001, show_progress=False)
    passed = run_script([*command, gated], cwd=str(tmp_path))
    out = tmp_path / "out"
    assert passed.returncode == 0 and (out / "manifest.json").exists() and (out / "clean" / "train.jsonl").exists()
    assert "decontaminating" not in passed.stderr
    _write_jsonl(tmp_path / "sft.jsonl", clean_rows + [{"messages": [{"role": "user", "content": _gsm8k_text(i)}]}
                                                       for i in range(3)])  # fmt: skip
    res = run_script([*command, gated], cwd=str(tmp_path))
    assert res.returncode == 2 and "benchmark 'gsm8k': 3 of 1319 items" in res.stderr, res.output[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["removed", "report.json"], "the earlier run's outputs are gone"
    assert len((out / "removed" / "train.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "report.json").read_text())["gsm8k"]["items_hit"] == 3
    own_gate = [{"path": os.path.join(BENCH, "gsm8k.jsonl"), "max_contaminated_fraction": 0.01}]
    own = _recipe(tmp_path, dataset=data, benchmarks=own_gate, max_contaminated_fraction=0.001)
    passes = run_script([*command, own], cwd=str(tmp_path))
    assert passes.returncode == 0, "a benchmark's own gate (1%) stands in for the stage's (0.1%)"
    assert json.loads((out / "report.json").read_text())["gsm8k"]["max_contaminated_fraction"] == 0.01
    assert "| 0.2274% | 1.00% | 3 |" in (out / "README.md").read_text()
    recipe = _recipe(tmp_path, dataset=data, max_contaminated_fraction=0.001, continue_on_contamination=True)
    ok = run_script([*command, recipe], cwd=str(tmp_path))
    assert ok.returncode == 0 and "gate breached" in ok.stdout
    assert len((out / "clean" / "train.jsonl").read_text().splitlines()) == 20


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"benchmarks": ["BADFIELD"]}, "no text field 'text'"),
        ({"benchmarks": ["EMPTY"]}, "has no items"),
        ({"ngram_size": 2}, "ngram_size"),
        ({"rule": "coverage", "threshold": 0}, "threshold"),
        ({"rule": "coverage", "threshold": 1.5}, "threshold"),
        ({"check": "assistant"}, "no row has assistant text to check"),
        ({"dataset_split": ["train", "train"]}, "a list of distinct split names"),
        ({"benchmarks": [{"path": "GSM8K", "max_contaminated_fraction": 2}]}, "max_contaminated_fraction 2 must be"),
    ],
)
def test_bad_input_is_one_line(tmp_path, change, fragment):
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "question": "no text field here"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    data = _write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "a prompt set row", "source": "x"}])
    names = {"BADFIELD": bad, "EMPTY": str(empty), "GSM8K": os.path.join(BENCH, "gsm8k.jsonl")}
    if "benchmarks" in change:
        change = {"benchmarks": [names[b] if isinstance(b, str) else {**b, "path": names[b["path"]]}
                                 for b in change["benchmarks"]]}  # fmt: skip
    res = run_script(
        [sys.executable, script("run_decontaminate.py"), _recipe(tmp_path, dataset=data, **change)], cwd=str(tmp_path)
    )
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert res.returncode == 2 and "Traceback" not in res.output, res.output[-2000:]
    assert len(errors) == 1 and fragment in errors[0], res.stderr[-2000:]
