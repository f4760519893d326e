"""A judge reply that contradicts itself is a parse failure (re-asked, then failed), never a score picked from it."""

from __future__ import annotations

import json

import pytest
from openai_fault_server import ScriptedOpenAIServer

from data_gen.endpoints import load_teacher
from data_gen.judge import JudgeArguments
from data_gen.judge.aspect_ratings import rate_aspects, shuffled_order
from data_gen.judge.critique import critique_completions
from data_gen.judge.parsing import parse_overall, parse_ratings
from data_gen.session import GenerationSession


def js(*entries, key: bool = True) -> str:
    """A JSON rating block from (text, rating) pairs; a bare array when key is False."""
    items = [{"text": t, "rating": r, "rationale": f"about text {t}"} for t, r in entries]
    return json.dumps({"ratings": items} if key else items)


def layout(*entries, header: str = "Text {}:") -> str:
    """The text layout from (text, rating) pairs."""
    return "\n".join(f"{header.format(t)}\nType: None\nRating: {r}\nRationale: fine" for t, r in entries)


CLEAN = [
    ("json", js((1, 4), (2, 2), (3, 5)), {0: 4, 1: 2, 2: 5}),
    (
        "json, string numbers",
        '{"ratings": [{"text": "1", "rating": "4"}, {"text": 2, "rating": 2}, {"text": 3, "rating": 5}]}',
        {0: 4, 1: 2, 2: 5},
    ),
    ("bare json array", js((1, 3), (2, 3), (3, 1), key=False), {0: 3, 1: 3, 2: 1}),
    (
        "json in a fence between prose with braces",
        "Sure {as asked}:\n```json\n" + js((1, 1), (2, 2), (3, 3)) + "\n```\nHope this helps :-}",
        {0: 1, 1: 2, 2: 3},
    ),
    (
        "json beside an unrelated json value",
        '{"note": "three texts"} ' + js((1, 5), (2, 4), (3, 3)) + " [1, 2, 3]",
        {0: 5, 1: 4, 2: 3},
    ),
    (
        "json whose rationale quotes the text layout",
        json.dumps(
            {
                "ratings": [
                    {"text": 1, "rating": 5, "rationale": "unlike Text 2: Rating: 1 would be unfair"},
                    {"text": 2, "rating": 3, "rationale": "ok"},
                    {"text": 3, "rating": 2, "rationale": "weak"},
                ]
            }
        ),
        {0: 5, 1: 3, 2: 2},
    ),
    ("text layout", layout((1, 2), (2, 5), (3, 4)), {0: 2, 1: 5, 2: 4}),
    (
        "text layout with markdown headers",
        layout((1, 2), (2, 5), (3, 4), header="#### Output for Text {}"),
        {0: 2, 1: 5, 2: 4},
    ),
    (
        "text layout, 'a rating: 5' inside a rationale",
        "Text 1\nRating: 3\nRationale: it does not earn a rating: 5 "
        "because it is short\nText 2\nRating: 4\nRationale: good\nText 3\nRating: 1\nRationale: wrong",
        {0: 3, 1: 4, 2: 1},
    ),
]


@pytest.mark.parametrize("reply,expected", [c[1:] for c in CLEAN], ids=[c[0] for c in CLEAN])
def test_an_unambiguous_reply_is_read(reply, expected):
    found, error = parse_ratings(reply, 3, "helpfulness")
    assert error is None
    assert {pos: entry["rating"] for pos, entry in found.items()} == expected


CONFLICTS = [
    # one block that rates a text twice
    ("json, a text rated twice", js((1, 4), (2, 4), (2, 2), (3, 5)), ["text 2 rated twice (4 and 2)"]),
    ("json, a text rated twice alike", js((1, 4), (2, 4), (2, 4), (3, 5)), ["text 2 rated twice (4 and 4)"]),
    (
        "json, a number and a string naming one text",
        '{"ratings": [{"text": 1, "rating": 4}, {"text": "1", "rating": 3}, '
        '{"text": 2, "rating": 2}, {"text": 3, "rating": 1}]}',
        ["text 1 rated twice (4 and 3)"],
    ),
    (
        "json, an off-scale and a valid rating for one text",
        js((1, 10), (1, 3), (2, 2), (3, 1)),
        ["text 1 rated twice (10 and 3)"],
    ),
    (
        "json, a text rated three times",
        js((1, 5), (1, 4), (1, 3), (2, 2), (3, 1)),
        ["text 1 rated 3 times (5, 4 and 3)"],
    ),
    (
        "json, every text rated twice",
        js((1, 1), (2, 2), (3, 3), (1, 1), (2, 2), (3, 3), (4, 4), (4, 4)),
        ["text 1 rated twice", "text 3 rated twice", "1 more texts rated more than once"],
    ),
    (
        "bare array, a text rated twice",
        js((1, 1), (2, 2), (2, 5), (3, 3), key=False),
        ["text 2 rated twice (2 and 5)"],
    ),
    # two blocks in one reply
    (
        "two json objects that disagree",
        js((1, 5), (2, 1), (3, 3)) + "\nOn reflection:\n" + js((1, 1), (2, 5), (3, 3)),
        [
            "2 rating blocks (JSON and JSON) in one reply",
            "text 1 rated twice (5 and 1)",
            "text 3 rated twice (3 and 3)",
        ],
    ),
    (
        "two json objects that agree",
        js((1, 5), (2, 1), (3, 3)) + "\n" + js((1, 5), (2, 1), (3, 3)),
        ["2 rating blocks (JSON and JSON)", "text 2 rated twice (1 and 1)"],
    ),
    (
        "two json objects rating different texts",
        js((1, 5), (2, 1)) + "\n" + js((3, 3)),
        ["2 rating blocks (JSON and JSON)"],
    ),
    (
        "a json object and a bare array",
        js((1, 5), (2, 1), (3, 3)) + " " + js((1, 5), (2, 2), (3, 3), key=False),
        ["2 rating blocks", "text 2 rated twice (1 and 2)"],
    ),
    (
        "json then a text layout that disagrees",
        js((1, 4), (2, 2), (3, 5)) + "\n\n" + layout((1, 4), (2, 5), (3, 5)),
        ["2 rating blocks (JSON and text layout) in one reply", "text 2 rated twice (2 and 5)"],
    ),
    (
        "a text layout then json that agrees",
        layout((1, 4), (2, 2), (3, 5)) + "\nAs JSON:\n" + js((1, 4), (2, 2), (3, 5)),
        ["2 rating blocks (JSON and text layout)", "text 1 rated twice (4 and 4)"],
    ),
    # the text layout rating a text twice
    ("text layout, a header repeated", layout((1, 4), (2, 3), (3, 2), (2, 1)), ["text 2 rated twice (3 and 1)"]),
    (
        "text layout, markdown header repeated",
        layout((1, 4), (2, 3), (3, 2), (3, 2), header="#### Output for Text {}"),
        ["text 3 rated twice (2 and 2)"],
    ),
    (
        "text layout, two rating lines under one header",
        "Text 1:\nRating: 4\nRating: 2\nRationale: x\n" + layout((2, 3), (3, 3)),
        ["text 1 rated twice (4 and 2)"],
    ),
    (
        "text layout, a second rating after the rationale",
        "Text 1:\nRating: 4\nRationale: good.\nRating: 2\n"
        "Rationale: on second thought, weak.\n" + layout((2, 3), (3, 3)),
        ["text 1 rated twice (4 and 2)"],
    ),
    (
        "text layout, a one-line entry repeated",
        "Text 1: Rating: 4\nText 2: Rating: 3\nText 3: Rating: 1\nText 1: Rating: 5",
        ["text 1 rated twice (4 and 5)"],
    ),
]


@pytest.mark.parametrize("aspect", ["helpfulness", "honesty"])
@pytest.mark.parametrize("reply,fragments", [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_a_conflicting_reply_is_refused_whole_with_a_reason(reply, fragments, aspect):
    found, error = parse_ratings(reply, 3, aspect)
    assert found == {}, "no rating may be taken from a reply that contradicts itself"
    assert error and "\n" not in error
    for fragment in fragments:
        assert fragment in error, error


def test_a_na_and_a_number_for_one_text_conflict():
    found, error = parse_ratings(js((1, "N/A"), (1, 3), (2, 2)), 2, "honesty")
    assert found == {} and error == 'text 1 rated twice ("N/A" and 3)'


def test_an_incomplete_reply_still_says_what_is_missing():
    found, error = parse_ratings(js((1, 4), (3, 2)), 3, "helpfulness")
    assert error.startswith("no valid rating for text(s) [2]") and set(found) == {0, 2}


OVERALL = [
    ("one score", "Solid.\nOverall score: 7", 7, None),
    ("the same score twice", "Overall score: 7/10 in short.\nDetails...\nOverall score: 7", 7, None),
    (
        "two scores",
        "Overall score: 7\nActually, it misses the point.\nOverall score: 4",
        None,
        "2 different overall scores (7 and 4) in one reply",
    ),
    (
        "two scores, = and /10 forms",
        "overall score = 9 ... Overall Score: 10/10",
        None,
        "2 different overall scores (9 and 10)",
    ),
    ("an off-scale score then a valid one", "Overall score: 7.5\nOverall score: 8", None, "(7.5 and 8)"),
    (
        "three lines, two values",
        "Overall score: 3\nOverall score: 8\nOverall score: 3",
        None,
        "2 different overall scores (3 and 8)",
    ),
    ("one off-scale score", "Overall score: 11", None, "score 11 is not a whole number from 1 to 10"),
]


@pytest.mark.parametrize("reply,score,error", [c[1:] for c in OVERALL], ids=[c[0] for c in OVERALL])
def test_parse_overall_refuses_two_different_scores(reply, score, error):
    got, why = parse_overall(reply)
    assert got == score
    assert (why is None) if error is None else (error in why), why


# -- through the re-ask loop, over real HTTP ------------------------------------------------------------------------

ANSWERS = {"Paris is the capital of France.": 5, "Lyon, I believe.": 2, "France has no capital.": 1}
ROW = {
    "prompt": "What is the capital of France?",
    "prompt_id": "p-capital",
    "completions": [{"model": f"m{i}", "text": text} for i, text in enumerate(ANSWERS)],
}


def _shown(content: str) -> dict[int, str]:
    return {n: content.split(f"Text {n}:\n", 1)[1].split("\n\n", 1)[0] for n in range(1, len(ANSWERS) + 1)}


def _judge(conflicting_until: int):
    """Replies that rate one text twice (JSON block plus a disagreeing text layout) for the first
    `conflicting_until` requests of a conversation, then a clean JSON reply from ANSWERS."""

    def respond(body: dict) -> str:
        messages = body["messages"]
        shown = _shown(messages[0]["content"])
        clean = [(n, ANSWERS[text]) for n, text in sorted(shown.items())]
        if len(messages) // 2 < conflicting_until:
            return js(*clean) + "\n\nIn words:\n" + layout(*[(n, 6 - r) for n, r in clean])
        return "Ratings:\n" + js(*clean)

    return respond


def _session(tmp_path, server):
    teacher = load_teacher(
        {
            "endpoints": [{"base_url": server.base_url, "model": "scripted"}],
            "max_retries": 0,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.01,
        },
        "test judge",
    )
    return GenerationSession(str(tmp_path / "out"), {"judge": teacher}, max_cost_usd=None, seed=1, show_progress=False)


def test_a_conflicting_reply_is_reasked_once_and_the_clean_answer_is_kept(tmp_path):
    row = json.loads(json.dumps(ROW))
    args = JudgeArguments(aspects=["helpfulness"], max_reasks=3, seed=1, show_progress=False)
    with ScriptedOpenAIServer(responder=_judge(conflicting_until=1)) as server, _session(tmp_path, server) as gen:
        counts = rate_aspects(gen, [row], args)
        paid = server.stats.total_paid
    assert paid == 2, "the first reply and exactly one re-ask"
    assert counts["failed_ratings"] == 0
    assert {c["text"]: c["ratings"]["helpfulness"]["rating"] for c in row["completions"]} == ANSWERS
    assert all(c["ratings"]["helpfulness"]["status"] == "ok" for c in row["completions"])
    first, second = row["judge_raw"]["helpfulness"]
    assert "In words:" in first and "In words:" not in second, "both raw replies kept, in order"
    # the order mapping is really exercised: the shown order is not the pool order
    assert shuffled_order(1, ROW["prompt_id"], "helpfulness", 3) != [0, 1, 2]


def test_a_judge_that_keeps_contradicting_itself_ends_as_failures(tmp_path):
    row = json.loads(json.dumps(ROW))
    args = JudgeArguments(aspects=["helpfulness"], max_reasks=2, seed=1, show_progress=False)
    seen_reasks = []

    def respond(body):
        if len(body["messages"]) > 1:
            seen_reasks.append(body["messages"][-1]["content"])
        return _judge(conflicting_until=99)(body)

    with ScriptedOpenAIServer(responder=respond) as server, _session(tmp_path, server) as gen:
        counts = rate_aspects(gen, [row], args)
        paid = server.stats.total_paid
    assert paid == 3 and len(row["judge_raw"]["helpfulness"]) == 3, "1 request + max_reasks, all kept"
    assert counts["failed_ratings"] == 3
    for c in row["completions"]:
        entry = c["ratings"]["helpfulness"]
        assert entry["status"] == "failed" and entry["rating"] is None and "rated twice" in entry["error"]
    assert len(seen_reasks) == 2 and all("2 rating blocks (JSON and text layout)" in m for m in seen_reasks), (
        "the re-ask tells the judge what was wrong"
    )


def test_a_critique_with_two_scores_is_reasked_then_failed_if_it_never_settles(tmp_path):
    row = json.loads(json.dumps(ROW))
    stubborn = "France has no capital."

    def respond(body):
        messages = body["messages"]
        text = messages[0]["content"].split("Answer:\n", 1)[1]
        if len(messages) == 1 or text == stubborn:
            return "Good start.\nOverall score: 8\nBut then it goes wrong.\nOverall score: 3"
        return f"Critique.\nOverall score: {2 * ANSWERS[text]}"

    args = JudgeArguments(aspects=["helpfulness"], max_reasks=2, seed=1, show_progress=False, critique=True)
    with ScriptedOpenAIServer(responder=respond) as server, _session(tmp_path, server) as gen:
        counts = critique_completions(gen, [row], args)
        paid = server.stats.total_paid
    assert paid == 2 * 2 + 3, "two answers settle on their one re-ask; the stubborn one uses all of them"
    scores = {c["text"]: c["overall_score"] for c in row["completions"]}
    assert scores == {"Paris is the capital of France.": 10, "Lyon, I believe.": 4, stubborn: None}
    assert counts["failed_critiques"] == 1
