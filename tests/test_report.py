"""The run report on a run directory built by hand: chat turns, links to each stage's files, and dataset text that
holds markup shown as text. The report of a real pipeline run is checked in test_pipeline.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest

from distill_core.report import STAGE_FILES, TURN_CHARS, write_report

SCRIPT = "<script>document.title = 'script ran'</script>"
IMAGE = '<img src="x" onerror="document.title = \'handler ran\'">'
LONG = "x" * (TURN_CHARS + 250)


class Page(HTMLParser):
    """The parts of the page the tests read: turns as (role, text), answers by kind, stage-file links, tags seen."""

    def __init__(self, page: str):
        super().__init__()
        self.turns: list[tuple[str, str]] = []
        self.answers: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._field: str | None = None
        self._depth = 0
        self._role = ""
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if self._field:
            self._depth += 1
        elif tag == "div" and classes and classes[0] in ("role", "text"):
            self._field, self._depth = classes[0], 1
            if classes[0] == "text":
                self.turns.append((self._role, ""))
            else:
                self._role = ""
        if tag == "div" and classes[:1] == ["answer"]:
            self.answers.append(classes[1])
        if tag == "a" and "stage-file" in classes:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if self._field:
            self._depth -= 1
            if not self._depth:
                self._field = None

    def handle_data(self, data):
        if self._field == "role":
            self._role += data
        elif self._field == "text":
            role, text = self.turns[-1]
            self.turns[-1] = (role, text + data)


def stage(run_dir, name: str, kind: str, files: dict[str, list[dict]]) -> None:
    d = run_dir / name
    for rel, rows in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.json").write_text(json.dumps({"pipeline": {"status": "complete", "kind": kind}, "cost_usd": 0.5}))
    (d / "README.md").write_text(f"# {name}\n")
    (d / "stage.log").write_text("done\n")


@pytest.fixture
def report(tmp_path):
    run_dir = tmp_path / "run"
    stage(
        run_dir,
        "dialogues",
        "dialogues",
        {
            "sft/train.jsonl": [
                {
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": SCRIPT},
                        {"role": "assistant", "content": LONG},
                        {"role": "user", "content": "and then?"},
                        {"role": "assistant", "content": "Then nothing."},
                    ]
                },
                {"messages": [{"role": "user", "content": "second"}, {"role": "assistant", "content": "row"}]},
                {"messages": [{"role": "user", "content": "third row, counted but not shown"}]},
            ]
        },
    )
    stage(
        run_dir,
        "judge",
        "judge",
        {
            "prefs/train.jsonl": [
                {
                    "prompt": [{"role": "user", "content": "Which is better?"}],
                    "chosen": [{"role": "assistant", "content": IMAGE}],
                    "rejected": [{"role": "assistant", "content": "worse"}],
                    "score_chosen": 4.25,
                    "score_rejected": 2.0,
                    "chosen_model": "teacher-a",
                    "rejected_model": "teacher-b",
                }
            ]
        },
    )
    stage(
        run_dir,
        "completions",
        "completions",
        {
            "pool/train.jsonl": [
                {
                    "prompt_id": "p1",
                    "prompt": "Name a colour.",
                    "completions": [
                        {"model": "m1", "text": "red", "principle": "helpfulness"},
                        {"model": "m2", "text": "blue"},
                    ],
                }
            ]
        },
    )
    (run_dir / "judge" / "stage.log").unlink()  # a stage that wrote no log: named, not linked
    path = write_report(
        str(run_dir), ["dialogues", "completions", "judge", "dpo"], "Run report: <b>test</b>", {"dialogues": "skipped"}
    )
    return run_dir, path, open(path, encoding="utf-8").read()


def test_samples_are_chat_turns(report):
    _, _, page = report
    parsed = Page(page)
    dialogue = [
        ("system", "Be brief."),
        ("user", SCRIPT),
        ("assistant", "x" * TURN_CHARS + " … 250 more characters"),
        ("user", "and then?"),
        ("assistant", "Then nothing."),
        ("user", "second"),
        ("assistant", "row"),
    ]
    assert parsed.turns[: len(dialogue)] == dialogue
    assert ("user", "third row, counted but not shown") not in parsed.turns and "(3 rows)" in page
    pool = [("user", "Name a colour."), ("assistant", "red"), ("assistant", "blue")]
    pair = [("user", "Which is better?"), ("assistant", IMAGE), ("assistant", "worse")]
    assert parsed.turns[len(dialogue) :] == pool + pair
    assert parsed.answers == ["completion", "completion", "chosen", "rejected"]
    assert "chosen · score 4.25 · teacher-a" in page and "rejected · score 2 · teacher-b" in page
    assert "m1 · helpfulness" in page
    assert '"messages"' not in page, "rows are shown as turns, not as their JSON"


def test_markup_in_samples_and_title_is_escaped(report):
    _, _, page = report
    assert "&lt;script&gt;document.title" in page and "&lt;img src=" in page and "&lt;b&gt;test&lt;/b&gt;" in page
    assert {"script", "img", "b"}.isdisjoint(Page(page).tags), "no tag from a sample reaches the page"


def test_each_stage_links_its_manifest_card_and_log_relative_to_the_report(report):
    _, path, page = report
    links = Page(page).links
    expected = [f"{name}/{file}" for name in ("dialogues", "completions", "judge") for _, file in STAGE_FILES]
    expected.remove("judge/stage.log")
    assert links == expected
    for href in links:
        assert not os.path.isabs(href) and os.path.isfile(os.path.join(os.path.dirname(path), unquote(href)))
    assert "no log (stage.log)" in page and "no manifest (manifest.json)" in page  # judge's log, dpo not run


def test_the_report_is_self_contained_and_moves_with_its_run_directory(report, tmp_path):
    run_dir, _, page = report
    moved = tmp_path / "elsewhere"
    shutil.move(str(run_dir), moved)
    for href in Page(page).links:
        assert (moved / unquote(href)).is_file()
    assert "http://" not in page and "https://" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_a_browser_shows_markup_in_samples_as_text(report, tmp_path):
    _, path, _ = report
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"file://{path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "<title>Run report: &lt;b&gt;test&lt;/b&gt;</title>" in dom, "neither sample's handler changed the title"
    assert "&lt;script&gt;document.title" in dom and "<script" not in dom


def _findings(examples: list[dict], hit: int) -> dict:
    return {"items": 80, "too_short": 0, "items_hit": hit, "contaminated_fraction": hit / 80, "rows_removed": hit,
            "examples": examples}  # fmt: skip


def test_decontamination_findings_per_benchmark_with_the_span_marked_and_escaped(tmp_path):
    """A passed check and one its gate stopped (no manifest; a report.json of an older run: spans marked by **)."""
    run_dir = tmp_path / "run"
    stage(run_dir, "decontaminate", "decontaminate", {})
    markup = {
        "row_index": 4,
        "split": "train_sft",
        "item_id": "81",
        "column": "messages[0]",
        "excerpt": "x",
        "excerpt_parts": [f"**Note:** {SCRIPT} ", "Compose an engaging travel blog post", " ok"],
    }
    report = {"mt_bench": {**_findings([markup], 1), "max_contaminated_fraction": 0.05},
              "gsm8k": {**_findings([], 0), "max_contaminated_fraction": None}}  # fmt: skip
    (run_dir / "decontaminate" / "report.json").write_text(json.dumps(report))
    (run_dir / "gate").mkdir()
    old = {"row_index": 0, "item_id": "gsm8k/test/3", "column": "prompt", "excerpt": "Q: **Janet's ducks lay**."}
    (run_dir / "gate" / "report.json").write_text(json.dumps({"gsm8k": _findings([old], 2)}))
    path = write_report(str(run_dir), ["decontaminate", "gate"], "r", {"gate": "failed"})
    page = open(path, encoding="utf-8").read()
    header = (
        "<th>benchmark</th><th>items</th><th>items hit</th><th>contaminated fraction</th><th>gate</th>"
        "<th>rows removed</th>"
    )
    assert page.count(header) == 2, "a table for each check"
    assert "<tr><td>gsm8k</td><td>80</td><td>0</td><td>0.00%</td><td>none</td><td>0</td></tr>" in page
    assert "<tr><td>mt_bench</td><td>80</td><td>1</td><td>1.25%</td><td>5.00%</td><td>1</td></tr>" in page
    assert "<tr><td>gsm8k</td><td>80</td><td>2</td><td>2.50%</td><td>—</td><td>2</td></tr>" in page, "an older run's"
    assert "mt_bench item 81: train_sft row 4, messages[0]" in page
    assert (
        "**Note:** &lt;script&gt;document.title = &#39;script ran&#39;&lt;/script&gt; "
        "<mark>Compose an engaging travel blog post</mark> ok" in page
    ), "the row's own ** and markup are text; only the matched span is marked"
    assert "gsm8k item gsm8k/test/3: row 0, prompt" in page and "Q: <mark>Janet&#39;s ducks lay</mark>." in page
    assert '<td class="failed">failed</td>' in page and "Stopped before it finished: see its log." in page
    assert "script" not in Page(page).tags
