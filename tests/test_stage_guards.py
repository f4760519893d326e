"""Guards that keep a generation stage from paying twice or keeping a bad result, against a real HTTP server.

- one run per output directory (and per pipeline run directory): a second run stops at once, naming the first;
- a stage whose requests failed exits 2 with one line, writes nothing, keeps its journal, and is not recorded as
  complete; a rerun against a working endpoint pays each failed request once;
- an existing dataset of the same recipe is not replaced by a smaller one unless asked;
- duplicates in a stage's inputs are refused (or dropped, for prompts) before the first request.

Every stage runs as a subprocess, as a user runs it; the scripted server counts what it was paid for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, script
from openai_fault_server import ScriptedOpenAIServer, _Reply, request_key

KEY = "sk-test-guards"
ENV = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO, "DISTILL_TEST_KEY": KEY}
PROMPTS = [f"Explain topic number {i} in two sentences." for i in range(6)]


class SwitchableServer(ScriptedOpenAIServer):
    """The scripted server, whose chat replies can be switched to the broken kinds a gateway sends with status 200:
    an HTML page, or JSON with ``choices: null``. ``broken_if`` limits the breakage to some requests. Nothing
    broken is counted as paid; every request still counts as an attempt."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mode = "ok"
        self.broken_if = lambda body: True

    def _route(self, request) -> _Reply:
        if request.path != "/v1/chat/completions" or self.mode == "ok":
            return super()._route(request)
        body = json.loads(request.body)
        if not self.broken_if(body):
            return super()._route(request)
        self._ledger.attempt(request_key(body))
        if self.mode == "html":
            page = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"
            return _Reply(200, page, delay_s=self.latency_s)
        doc = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": None,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        return _Reply(200, json.dumps(doc).encode(), delay_s=self.latency_s)


def teacher(base_url: str, max_retries: int = 1) -> dict:
    return {
        "endpoints": [{"base_url": base_url, "model": "scripted", "api_key_env": "DISTILL_TEST_KEY"}],
        "prices": {"scripted": {"input": 2.0, "output": 6.0}},
        "max_concurrency": 8,
        "timeout_s": 5.0,
        "max_retries": max_retries,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    }


def dialogue_recipe(tmp_path, base_url: str, name: str = "dialogues.yaml", **extra) -> str:
    """A dialogue stage over six prompts, three exchanges each: 6 + 6 + 6 assistant and 6 + 6 user requests."""
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    recipe = {
        "teacher": teacher(base_url),
        "prompts": str(prompts),
        "output_dir": "runs/dlg",
        "num_dialogues": 6,
        "min_turns": 3,
        "max_turns": 3,
        "max_tokens": 16,
        "user_max_tokens": 8,
        "show_progress": False,
        "seed": 1,
        **extra,
    }
    (tmp_path / name).write_text(yaml.safe_dump(recipe))
    return name


def dialogues(tmp_path, recipe: str, *extra: str) -> list[str]:
    return [sys.executable, script("run_dialogues.py"), recipe, *extra]


def run(cmd: list[str], cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def wait_for_lock(directory, pid: int, timeout: float = 60.0) -> None:
    """Until ``directory/.lock`` names ``pid``: that process holds it."""
    deadline = time.monotonic() + timeout
    path = os.path.join(directory, ".lock")
    while time.monotonic() < deadline:
        try:
            if json.loads(open(path).read()).get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"{path} never named PID {pid}")


# -- one run per directory ------------------------------------------------------------------------------------------


def test_lock_is_reentrant_in_a_process_and_taken_over_from_a_killed_one(tmp_path):
    from distill_core import locks

    d = str(tmp_path / "out")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); "
            "from distill_core import locks; locks.acquire(sys.argv[2]); print('held', flush=True); "
            "time.sleep(60)",
            REPO,
            d,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.DirectoryInUse, match=rf"in use by PID {holder.pid} .*wait for it or stop it"):
            locks.acquire(d)
        assert locks.holder(d)["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert locks.holder(d) is None, "the kernel dropped the killed holder's lock"
    outer = locks.acquire(d)
    inner = locks.acquire(d)  # the same process again: a stage's session inside the stage's own hold
    assert json.loads(open(os.path.join(d, ".lock")).read())["pid"] == os.getpid()
    inner.release()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from distill_core import locks; print(locks.holder(sys.argv[2])['pid'])",
            REPO,
            d,
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == str(os.getpid()), "still held after the inner release"
    outer.release()
    assert locks.holder(d) is None


def test_two_runs_started_together_on_one_directory_pay_once(tmp_path):
    with SwitchableServer(latency_s=0.6) as server:
        recipe = dialogue_recipe(tmp_path, server.base_url)
        out = tmp_path / "runs/dlg"
        out.mkdir(parents=True)
        stale = dead_pid()  # a lock file left by a run that died: it must not block anyone
        (out / ".lock").write_text(json.dumps({"pid": stale, "host": "elsewhere", "started": "yesterday"}) + "\n")
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                dialogues(tmp_path, recipe),
                cwd=tmp_path,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        ended = {}
        outputs = {}
        while len(ended) < 2:
            for p in procs:
                if p.pid not in ended and p.poll() is not None:
                    ended[p.pid] = time.monotonic() - started
                    outputs[p.pid] = p.communicate()
            time.sleep(0.01)
        stats = server.stats
    winner, loser = sorted(procs, key=lambda p: p.returncode)
    assert (winner.returncode, loser.returncode) == (0, 2), outputs[loser.pid][1][-2000:]
    errors = error_lines(outputs[loser.pid][1])
    assert len(errors) == 1 and "Traceback" not in outputs[loser.pid][1], outputs[loser.pid][1]
    assert f"runs/dlg is in use by PID {winner.pid} (run_dialogues.py) on host" in errors[0], errors[0]
    assert "wait for it or stop it" in errors[0]
    assert ended[loser.pid] < ended[winner.pid], "the second run stopped at once, before the first had finished"
    # 6 dialogues of 3 exchanges: 18 assistant and 12 user requests, each paid exactly once
    assert len(stats.paid) == 30 and set(stats.paid.values()) == {1}
    assert len(rows(out / "sft/train.jsonl")) == 6
    assert json.loads((out / ".lock").read_text())["pid"] == winner.pid, "the dead run's lock was taken over"


def pipeline_recipe(tmp_path, stage_recipe: str, name: str = "pipe.yaml") -> str:
    data = {
        "name": "guards",
        "run_dir": "runs/pipe",
        "stages": {"dialogues": {"recipe": stage_recipe, "overrides": {"show_progress": False}}},
    }
    (tmp_path / name).write_text(yaml.safe_dump(data))
    return name


def test_a_second_pipeline_and_a_rerun_beside_a_live_stage_stop_at_once(tmp_path):
    with SwitchableServer(latency_s=1.0) as server:  # the first pipeline's stage runs for 5 s or more
        recipe = pipeline_recipe(tmp_path, dialogue_recipe(tmp_path, server.base_url))
        first = subprocess.Popen(
            [sys.executable, script("run_pipeline.py"), recipe],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_lock(tmp_path / "runs/pipe", first.pid)
        second = run([sys.executable, script("run_pipeline.py"), recipe], tmp_path)
        assert first.poll() is None, "the second pipeline was refused while the first still ran"
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
        errors = error_lines(second.stderr)
        assert len(errors) == 1 and f"runs/pipe is in use by PID {first.pid} (run_pipeline.py)" in errors[0], errors
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err[-2000:]
        paid = server.stats.paid
        assert len(paid) == 30 and set(paid.values()) == {1}

        # A stage still running after its pipeline was killed holds its own directory. Here it is a standalone run
        # of the same stage on that directory (a changed recipe, so the pipeline would otherwise run it again):
        # the pipeline must stop at once naming the stage's PID, and pay nothing.
        changed = dialogue_recipe(tmp_path, server.base_url, "dialogues2.yaml", seed=2)
        recipe = pipeline_recipe(tmp_path, changed, "pipe2.yaml")
        orphan = subprocess.Popen(
            dialogues(tmp_path, changed, "--output_dir", "runs/pipe/dialogues"),
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_lock(tmp_path / "runs/pipe/dialogues", orphan.pid)
        rerun = run([sys.executable, script("run_pipeline.py"), recipe], tmp_path)
        assert orphan.poll() is None, "the pipeline was refused while the stage still ran"
        assert rerun.returncode == 2, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        errors = error_lines(rerun.stderr)
        assert (
            len(errors) == 1 and f"stage 'dialogues': runs/pipe/dialogues is in use by PID {orphan.pid}" in errors[0]
        ), errors
        assert not list(tmp_path.joinpath("runs/pipe").glob("dialogues.stale-*")), "the live stage's outputs stay put"
        _, err = orphan.communicate(timeout=120)
        assert orphan.returncode == 0, err[-2000:]
        paid = server.stats.paid
    assert len(paid) == 60 and set(paid.values()) == {1}, "the standalone run paid its own 30 requests, once each"


# -- a failed stage is not a success --------------------------------------------------------------------------------


def test_an_all_failed_stage_exits_2_writes_nothing_and_a_rerun_pays_only_the_failed(tmp_path):
    out = tmp_path / "runs/dlg"
    (out / "sft").mkdir(parents=True)
    good = '{"messages": [{"role": "user", "content": "kept"}, {"role": "assistant", "content": "as is"}]}\n'
    (out / "sft/train.jsonl").write_text(good)
    with SwitchableServer() as broken:
        broken.mode = "html"
        res = run(dialogues(tmp_path, dialogue_recipe(tmp_path, broken.base_url)), tmp_path)
        attempts = broken.stats.attempts
        assert broken.stats.total_paid == 0
    assert res.returncode == 2, res.stderr[-2000:]
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    line = errors[0]
    assert "dialogues: 6 of 6 requests failed (above max_failure_rate 0.1)" in line, line
    assert "most common error: 'gave up after 2 attempts: malformed reply" in line and "(6 times)" in line, line
    assert (
        "the journal runs/dlg/journal.jsonl is kept" in line and "only the failed requests are sent again" in line
    ), line
    assert len(attempts) == 6 and set(attempts.values()) == {2}  # one retry each, as the teacher says
    assert (out / "sft/train.jsonl").read_text() == good, "the earlier dataset is untouched"
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists()
    journal = rows(out / "journal.jsonl")
    assert len(journal) == 6 and {r["status"] for r in journal} == {"failed"}

    with SwitchableServer() as fixed:  # another endpoint of the same model: the journal's keys still apply
        res = run(dialogues(tmp_path, dialogue_recipe(tmp_path, fixed.base_url, "fixed.yaml")), tmp_path)
        stats = fixed.stats
    assert res.returncode == 0, res.stderr[-2000:]
    # the 6 failed first turns were sent again, once each, and the dialogues went on: 30 requests, each paid once
    assert len(stats.paid) == 30 and set(stats.paid.values()) == {1} and stats.total_attempts == 30
    assert len(rows(out / "sft/train.jsonl")) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["failures"]["failed"] == 0 and manifest["counts"]["dialogues"] == 6


def test_a_pipeline_does_not_record_a_failed_stage_as_complete(tmp_path):
    with SwitchableServer() as server:
        server.mode = "null"
        recipe = pipeline_recipe(tmp_path, dialogue_recipe(tmp_path, server.base_url))
        res = run([sys.executable, script("run_pipeline.py"), recipe], tmp_path)
        assert res.returncode == 2, res.stdout[-2000:]
        errors = error_lines(res.stderr)
        assert len(errors) == 1 and "stage 'dialogues' failed (exit 2)" in errors[0], errors
        assert "dialogues: 6 of 6 requests failed" in errors[0] and "malformed reply" in errors[0], errors[0]
        d = tmp_path / "runs/pipe/dialogues"
        assert not (d / "manifest.json").exists() and not (d / "sft").exists()

        server.mode = "ok"  # the endpoint is fixed; the same pipeline resumes instead of skipping the stage
        res = run([sys.executable, script("run_pipeline.py"), recipe], tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "[dialogues] resuming" in res.stdout and "up to date" not in res.stdout
        paid = server.stats.paid
    assert len(paid) == 30 and set(paid.values()) == {1}
    assert json.loads((d / "manifest.json").read_text())["pipeline"]["status"] == "complete"


def test_a_smaller_dataset_does_not_replace_one_of_the_same_recipe_unless_asked(tmp_path):
    out = tmp_path / "runs/dlg"
    with SwitchableServer() as server:
        recipe = dialogue_recipe(tmp_path, server.base_url, max_failure_rate=0.5)
        first = run(dialogues(tmp_path, recipe), tmp_path)
        assert first.returncode == 0, first.stderr[-2000:]
        before = (out / "sft/train.jsonl").read_bytes()
        assert len(rows(out / "sft/train.jsonl")) == 6

        # the journal is lost and the endpoint now fails the first turn of two dialogues: a run of the same recipe
        # would make 4 dialogues where 6 exist
        (out / "journal.jsonl").unlink()
        server.mode = "html"
        server.broken_if = lambda body: body["messages"][-1]["content"] in PROMPTS[:2]
        smaller = run(dialogues(tmp_path, recipe), tmp_path)
        assert smaller.returncode == 2, smaller.stderr[-2000:]
        errors = error_lines(smaller.stderr)
        assert len(errors) == 1, smaller.stderr[-2000:]
        assert (
            "runs/dlg/sft/train.jsonl has 6 rows from an earlier run of the same recipe but this run produced 4"
            in errors[0]
            and "replace_smaller_output: true" in errors[0]
        ), errors[0]
        assert (out / "sft/train.jsonl").read_bytes() == before
        paid = server.stats.total_paid

        asked = run(dialogues(tmp_path, recipe, "--replace_smaller_output", "true"), tmp_path)
        assert asked.returncode == 0, asked.stderr[-2000:]
        assert len(rows(out / "sft/train.jsonl")) == 4
        assert server.stats.total_paid == paid, "the replies kept in the journal were not paid for again"


def judged_pool(tmp_path, duplicate: bool) -> str:
    lines = [
        {
            "prompt": f"Question {i}?",
            "completions": [{"model": "a", "text": f"answer {i} a"}, {"model": "b", "text": f"answer {i} b"}],
        }
        for i in range(3)
    ]
    if duplicate:
        lines.append(dict(lines[1]))
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return str(tmp_path / "pool.jsonl")


def test_a_judge_whose_every_rating_failed_writes_nothing(tmp_path):
    with SwitchableServer() as server:  # its replies are word salad: no rating can be read from them
        recipe = {
            "pool": judged_pool(tmp_path, False),
            "judge": teacher(server.base_url),
            "mode": "text",
            "aspects": ["honesty"],
            "max_reasks": 0,
            "output_dir": "runs/judge",
            "show_progress": False,
        }
        (tmp_path / "judge.yaml").write_text(yaml.safe_dump(recipe))
        res = run([sys.executable, script("run_judge.py"), "judge.yaml"], tmp_path)
        assert server.stats.total_paid == 3
    assert res.returncode == 2, res.stderr[-2000:]
    errors = error_lines(res.stderr)
    assert (
        len(errors) == 1 and "judge: all 6 ratings failed" in errors[0] and "runs/judge/journal.jsonl" in errors[0]
    ), errors
    assert not (tmp_path / "runs/judge/prefs").exists() and not (tmp_path / "runs/judge/manifest.json").exists()


# -- duplicates in the inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aspects,duplicate_row,fragment",
    [
        ("[honesty, helpfulness, honesty]", False, "aspects[2] repeats aspects[0] ('honesty'); list each one once"),
        ("[honesty]", True, "pool.jsonl lines 2 and 4: both hold prompt_id"),
    ],
    ids=["repeated-aspect", "repeated-pool-row"],
)
def test_judge_refuses_duplicates_before_any_request(tmp_path, aspects, duplicate_row, fragment):
    with SwitchableServer() as server:
        recipe = {
            "pool": judged_pool(tmp_path, duplicate_row),
            "judge": teacher(server.base_url),
            "mode": "text",
            "aspects": yaml.safe_load(aspects),
            "output_dir": "runs/judge",
            "show_progress": False,
        }
        (tmp_path / "judge.yaml").write_text(yaml.safe_dump(recipe))
        res = run([sys.executable, script("run_judge.py"), "judge.yaml"], tmp_path)
        attempts = server.stats.total_attempts
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and fragment in errors[0], errors
    assert attempts == 0, "nothing was sent"


def test_completions_drop_duplicate_prompts_and_refuse_a_repeated_model(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    texts = ["Name a river.", "Name a mountain.", "Name a river.", "Name a lake.", "Name a mountain."]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    with SwitchableServer() as server:
        model = teacher(server.base_url)
        recipe = {
            "prompts": str(prompts),
            "completions_per_prompt": 2,
            "max_tokens": 8,
            "output_dir": "runs/pool",
            "show_progress": False,
        }
        (tmp_path / "repeated.yaml").write_text(yaml.safe_dump({**recipe, "models": [model, model]}))
        (tmp_path / "pool.yaml").write_text(yaml.safe_dump({**recipe, "models": [model]}))
        repeated = run([sys.executable, script("run_completions.py"), "repeated.yaml"], tmp_path)
        assert repeated.returncode == 2, repeated.stderr[-2000:]
        assert server.stats.total_attempts == 0
        errors = error_lines(repeated.stderr)
        assert len(errors) == 1 and "models[1] repeats models[0]" in errors[0], errors

        res = run([sys.executable, script("run_completions.py"), "pool.yaml"], tmp_path)
        paid = server.stats.paid
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 duplicate prompt(s) dropped; 3 distinct prompts are used" in res.stderr
    pool = rows(tmp_path / "runs/pool/pool/train.jsonl")
    assert [r["prompt"] for r in pool] == ["Name a river.", "Name a mountain.", "Name a lake."]
    assert len(paid) == 3 * 2 and set(paid.values()) == {1}
