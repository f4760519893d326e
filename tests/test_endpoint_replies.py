"""Endpoints and judges that misbehave on every request: each ends as one line and exit 2, never as a success.

One table of endpoint behaviours (a completion stage against a real HTTP server on 127.0.0.1) and one of judge
behaviours (a text-mode judging stage whose judge never gives a usable rating). For every case:
- exit code 2, exactly one ``error:`` line, naming what is at fault (the endpoint or the journal), no traceback;
- no hang: each run has a time limit;
- the dataset already in the output directory is byte-identical afterwards, and no manifest marks it complete;
- nothing is paid twice (the server counts each well-formed reply it bills).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, script
from openai_fault_server import ScriptedOpenAIServer, _Reply, request_key

KEY_ENV = "DISTILL_TEST_KEY"
ENV = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO, KEY_ENV: "sk-test-replies-0123456789"}
PROMPTS = [f"Describe place number {i} in one sentence." for i in range(3)]
EXISTING = b'{"prompt": "kept", "completions": []}\n'  # a dataset from an earlier, good run
TIME_LIMIT_S = 60


def _chat(model: str, message) -> bytes:
    choice = {"index": 0, "finish_reason": "stop"}
    if message is not None:
        choice["message"] = message
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    ).encode()


# status 200 bodies that a gateway, a proxy or a broken server sends where a chat completion belongs
BROKEN_200 = {
    "html page": lambda model: b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
    "plain text": lambda model: b"upstream connect error or disconnect/reset before headers",
    "choices null": lambda model: json.dumps({"id": "x", "object": "chat.completion", "choices": None}).encode(),
    "choices empty": lambda model: json.dumps({"id": "x", "object": "chat.completion", "choices": []}).encode(),
    "no message": lambda model: _chat(model, None),
    "content not text": lambda model: _chat(model, {"role": "assistant", "content": {"text": "hi"}}),
    "json array": lambda model: b"[]",
    "empty body": lambda model: b"",
}


class BrokenServer(ScriptedOpenAIServer):
    """Answers every chat completion with one of BROKEN_200; ``models_page`` also breaks GET /v1/models."""

    def __init__(self, broken: str | None = None, models_page: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.broken = broken
        self.models_page = models_page

    def _route(self, request) -> _Reply:
        if self.models_page:
            return _Reply(200, b"<html><body>It works!</body></html>")
        if self.broken is None or request.path != "/v1/chat/completions":
            return super()._route(request)
        body = json.loads(request.body)
        self._ledger.attempt(request_key(body))
        return _Reply(200, BROKEN_200[self.broken](body.get("model")))


def teacher(base_url: str, **extra) -> dict:
    return {
        "endpoints": [{"base_url": base_url, "model": "scripted", "api_key_env": KEY_ENV}],
        "prices": {"scripted": {"input": 2.0, "output": 6.0}},
        "max_concurrency": 4,
        "timeout_s": 1.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        **extra,
    }


def run_stage(tmp_path, script_name: str, recipe: dict) -> tuple[subprocess.CompletedProcess, float]:
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(recipe))
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, script(script_name), str(path)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S,
    )
    return res, time.monotonic() - started


def assert_refused(res, *fragments: str) -> str:
    assert res.returncode == 2, res.stdout[-1500:] + res.stderr[-1500:]
    assert "Traceback" not in res.stderr and "Task exception was never retrieved" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert ENV[KEY_ENV] not in res.stdout + res.stderr
    return errors[0]


def completion_recipe(tmp_path, base_url: str, **teacher_extra) -> dict:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    existing = tmp_path / "out" / "pool" / "train.jsonl"
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(EXISTING)
    return {
        "prompts": str(prompts),
        "models": [teacher(base_url, **teacher_extra)],
        "output_dir": "out",
        "completions_per_prompt": 2,
        "max_tokens": 8,
        "show_progress": False,
    }


def assert_outputs_intact(tmp_path) -> None:
    assert (tmp_path / "out" / "pool" / "train.jsonl").read_bytes() == EXISTING
    assert not (tmp_path / "out" / "manifest.json").exists()


# kind -> (server arguments, teacher overrides, fragments the error line must hold)
ENDPOINT_CASES = {
    **{f"200 {name}": ({"broken": name}, {}, ["6 of 6 requests failed", "journal"]) for name in BROKEN_200},
    "every path a web page": ({"models_page": True}, {}, ["/models", "not the OpenAI API", "base_url"]),
    "always 500": ({"fault_rate": 1.0, "faults": ("500",)}, {}, ["6 of 6 requests failed", "500"]),
    "always 429": (
        {"fault_rate": 1.0, "faults": ("429",), "retry_after_s": 0.01},
        {},
        ["6 of 6 requests failed", "429"],
    ),
    "never answers": (
        {"fault_rate": 1.0, "faults": ("timeout",), "hang_s": 30.0},
        {"timeout_s": 0.5},
        ["6 of 6 requests failed", "timeout"],
    ),
    "drips the reply": (
        {"fault_rate": 1.0, "faults": ("drip",), "drip_s": 0.2},
        {"timeout_s": 0.5},
        ["6 of 6 requests failed", "timeout"],
    ),
    "drops the connection": ({"fault_rate": 1.0, "faults": ("drop",)}, {}, ["6 of 6 requests failed"]),
    "truncated json": ({"fault_rate": 1.0, "faults": ("malformed",)}, {}, ["6 of 6 requests failed", "malformed"]),
    "400 echoing the key": ({"fault_rate": 1.0, "faults": ("400_echo_key",)}, {}, ["6 of 6 requests failed", "400"]),
    "401 on requests": ({"fault_rate": 1.0, "faults": ("401",)}, {}, [KEY_ENV]),
}


@pytest.mark.parametrize("case", list(ENDPOINT_CASES))
def test_a_misbehaving_endpoint_ends_in_one_line_and_keeps_the_old_dataset(tmp_path, case):
    server_args, teacher_extra, fragments = ENDPOINT_CASES[case]
    with (
        BrokenServer(**server_args)
        if {"broken", "models_page"} & set(server_args)
        else ScriptedOpenAIServer(**server_args) as server
    ):
        res, took = run_stage(
            tmp_path, "run_completions.py", completion_recipe(tmp_path, server.base_url, **teacher_extra)
        )
        stats = server.stats
    assert_refused(res, *fragments)
    assert took < TIME_LIMIT_S
    assert_outputs_intact(tmp_path)
    assert max(stats.attempts.values(), default=0) <= 3, "more attempts than max_retries allows"
    if case != "drips the reply":  # a provider bills a reply it is still dripping when the client gives up on it
        assert all(n == 1 for n in stats.paid.values()), "a reply was paid twice"
    if "journal" in fragments:
        assert (tmp_path / "out" / "journal.jsonl").exists(), "the failures are kept for the rerun"


# --- judges whose replies never give a usable rating -------------------------------------------------------------

JUDGE_REPLIES = {
    "no ratings at all": lambda k: "All of these texts are fine and I like them.",
    "off the scale": lambda k: json.dumps(
        {"ratings": [{"text": i + 1, "rating": 10, "rationale": "great"} for i in range(k)]}
    ),
    "half ratings": lambda k: json.dumps(
        {"ratings": [{"text": i + 1, "rating": 3.5, "rationale": "ok"} for i in range(k)]}
    ),
    "one text rated twice": lambda k: json.dumps(
        {
            "ratings": [{"text": 1, "rating": 4, "rationale": "a"}, {"text": 1, "rating": 2, "rationale": "b"}]
            + [{"text": i + 1, "rating": 3, "rationale": "c"} for i in range(1, k)]
        }
    ),
    "two rating blocks": lambda k: "\n".join(
        json.dumps({"ratings": [{"text": i + 1, "rating": r, "rationale": "x"} for i in range(k)]}) for r in (2, 5)
    ),
    "ratings for the wrong texts": lambda k: json.dumps(
        {"ratings": [{"text": i + 10, "rating": 3, "rationale": "x"} for i in range(k)]}
    ),
}


@pytest.mark.parametrize("case", list(JUDGE_REPLIES))
def test_a_judge_that_never_rates_usably_ends_in_one_line(tmp_path, case):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps(
                {
                    "prompt_id": f"p{i}",
                    "prompt": p,
                    "completions": [
                        {"model": m, "text": f"Answer {m} to {p}", "principle": "helpfulness", "finish_reason": "stop"}
                        for m in ("a", "b")
                    ],
                }
            )
            + "\n"
            for i, p in enumerate(PROMPTS)
        )
    )
    reply = JUDGE_REPLIES[case]
    with ScriptedOpenAIServer(responder=lambda body: reply(2)) as server:
        existing = tmp_path / "out" / "pairs" / "train.jsonl"
        existing.parent.mkdir(parents=True)
        existing.write_bytes(EXISTING)
        res, _ = run_stage(
            tmp_path,
            "run_judge.py",
            {
                "pool": str(pool),
                "judge": teacher(server.base_url),
                "mode": "text",
                "aspects": ["helpfulness"],
                "max_reasks": 1,
                "output_dir": "out",
                "show_progress": False,
            },
        )
        stats = server.stats
    assert_refused(res, "failed")
    assert existing.read_bytes() == EXISTING
    assert not (tmp_path / "out" / "manifest.json").exists()
    # one call per prompt and aspect, and one re-ask of each: every reply billed once, none sent twice
    assert stats.total_paid == len(stats.paid) == 2 * len(PROMPTS)
