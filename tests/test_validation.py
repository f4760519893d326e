"""Every out-of-range, malformed or unreadable input is refused at validation: one `error:` line naming the file and
the key, exit code 2, before a single request is sent and before anything in output_dir is touched.

Each case runs the real script as a subprocess against a scripted OpenAI server that counts what reaches it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import pytest
import yaml
from conftest import SHARED_DATA, run_script, script
from openai_fault_server import ScriptedOpenAIServer

SEEDS = os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl")
SECRET = "sk-proj-Val1dation0123456789abcdefDoNotEcho"
CASE_TIMEOUT_S = 120  # validation takes about a second; the dataset cases import TRL first
OUT = "runs/out"
SENTINEL = "keep.jsonl"
PRECIOUS = '{"row": "written by an earlier run"}\n'
PRICES_FIX = "write prices: {MODEL: {input: USD per 1M input tokens, output: USD per 1M output tokens}}"

STAGE_SCRIPTS = {
    "self_instruct": "run_self_instruct.py",
    "dialogues": "run_dialogues.py",
    "completions": "run_completions.py",
    "judge": "run_judge.py",
    "sft": "run_sft.py",
    "dpo": "run_dpo.py",
}


def teacher_mapping(url: str, **changes) -> dict:
    """A valid teacher pointing at the scripted server; each change replaces a key (None removes it)."""
    config = {
        "endpoints": [{"base_url": url, "model": "scripted", "api_key_env": "DISTILL_TEST_KEY"}],
        "prices": {"scripted": {"input": 2.0, "output": 6.0}},
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.1,
    }
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def stage_command(stage: str) -> list[str]:
    """The stage run the way a user would, reading every input this test writes into the workspace."""
    base = [sys.executable, script(STAGE_SCRIPTS[stage])]
    if stage == "self_instruct":
        return base + [
            "recipes/smoke/self_instruct.yaml",
            "--seed_tasks",
            SEEDS,
            "--teacher",
            "teacher.yaml",
            "--output_dir",
            OUT,
            "--show_progress",
            "false",
        ]
    if stage == "dialogues":
        return base + [
            "recipes/smoke/dialogues.yaml",
            "--prompts",
            "prompts.jsonl",
            "--teacher",
            "teacher.yaml",
            "--user_simulator",
            "teacher.yaml",
            "--output_dir",
            OUT,
            "--show_progress",
            "false",
        ]
    if stage == "completions":
        return base + [
            "recipes/smoke/completions.yaml",
            "--prompts",
            "prompts.jsonl",
            "--models",
            "[teacher.yaml]",
            "--output_dir",
            OUT,
            "--show_progress",
            "false",
        ]
    if stage == "judge":
        return base + [
            "recipes/smoke/judge.yaml",
            "--pool",
            "pool.jsonl",
            "--mode",
            "text",
            "--judge",
            "teacher.yaml",
            "--output_dir",
            OUT,
            "--show_progress",
            "false",
        ]
    return (
        base
        + [f"recipes/smoke/{stage}.yaml", "--output_dir", OUT]
        + (["--model_name_or_path", "runs/smoke/tiny-model"] if stage == "dpo" else [])
    )


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


POOL_ROW = {
    "prompt": "Name a colour.",
    "completions": [{"model": "a", "text": "Red."}, {"model": "b", "text": "Blue."}],
}
GOOD_MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@dataclass
class Case:
    id: str
    stage: str
    args: list[str] = field(default_factory=list)  # appended to the stage command: later flags win
    fragments: tuple[str, ...] = ()  # all must be in the error line; the first names the file
    teacher_changes: dict = field(default_factory=dict)  # keys of the valid teacher.yaml replaced (None: removed)
    files: dict[str, str | bytes] = field(default_factory=dict)  # extra files written into the workspace
    absent: tuple[str, ...] = ()  # must appear nowhere in the output
    recipe_edit: tuple[str, str, str] | None = (
        None  # (new file, old text, new text) copied from the stage's smoke recipe
    )


def teacher_case(id: str, fragments: tuple[str, ...], stage: str = "dialogues", absent=(), **changes) -> Case:
    return Case(id, stage, fragments=("teacher.yaml",) + fragments, teacher_changes=changes, absent=absent)


def bound_case(id: str, stage: str, key: str, value: str, expected: str, fix: str = "fix the value") -> Case:
    return Case(
        id,
        stage,
        args=[f"--{key}", value],
        fragments=(f"recipes/smoke/{stage}.yaml", f"--{key}", f"key '{key}' must be {expected}, got {value}", fix),
    )


def recipe_case(id: str, stage: str, old: str, new: str, fragments: tuple[str, ...]) -> Case:
    name = f"bad-{stage}.yaml"
    return Case(id, stage, fragments=(name,) + fragments, recipe_edit=(name, old, new))


NO_LIMIT = "omit the key for no limit"
CASES = [
    # ---- teacher overlays: prices
    teacher_case(
        "prices-input-is-a-word",
        ("prices of model 'scripted'", "'input'", "'cheap'", PRICES_FIX),
        prices={"scripted": {"input": "cheap", "output": 6.0}},
    ),
    teacher_case("prices-bare-number", ("prices of model 'gpt-4'", "got 30", PRICES_FIX), prices={"gpt-4": 30}),
    teacher_case(
        "prices-unknown-key",
        ("prices of model 'scripted'", "unknown key 'cached_input'", PRICES_FIX),
        prices={"scripted": {"input": 2.0, "output": 6.0, "cached_input": 0.5}},
    ),
    teacher_case(
        "prices-half-missing",
        ("prices of model 'scripted'", "'output' is missing", PRICES_FIX),
        prices={"scripted": {"input": 2.0}},
    ),
    teacher_case(
        "prices-negative",
        ("prices of model 'scripted'", "'output' must be a number >= 0", PRICES_FIX),
        prices={"scripted": {"input": 2.0, "output": -6.0}},
    ),
    teacher_case("prices-not-a-mapping", ("key 'prices' expects dict", PRICES_FIX), prices=30),
    # ---- teacher overlays: limits
    teacher_case("max-concurrency-zero", ("key 'max_concurrency' must be >= 1, got 0",), max_concurrency=0),
    teacher_case(
        "rpm-negative", ("key 'requests_per_minute' must be > 0, got -10", NO_LIMIT), requests_per_minute=-10
    ),
    teacher_case("rpm-zero", ("key 'requests_per_minute' must be > 0, got 0", NO_LIMIT), requests_per_minute=0),
    teacher_case("tpm-zero", ("key 'tokens_per_minute' must be > 0, got 0", NO_LIMIT), tokens_per_minute=0),
    teacher_case("timeout-negative", ("key 'timeout_s' must be > 0, got -5",), timeout_s=-5),
    teacher_case("max-retries-negative", ("key 'max_retries' must be >= 0, got -1",), max_retries=-1),
    teacher_case("backoff-base-zero", ("key 'backoff_base_s' must be > 0, got 0",), backoff_base_s=0),
    teacher_case(
        "backoff-max-below-base",
        ("backoff_max_s (0.1) must be >= backoff_base_s (0.5)",),
        backoff_base_s=0.5,
        backoff_max_s=0.1,
    ),
    teacher_case(
        "limit-key-typo", ("unknown key 'max_concurency'", "did you mean 'max_concurrency'"), max_concurency=4
    ),
    # ---- teacher overlays: endpoints
    teacher_case(
        "base-url-without-scheme",
        ("endpoints[0]", "base_url 'localhost:8000/v1'", "http(s) URL"),
        endpoints=[{"base_url": "localhost:8000/v1", "model": "m"}],
    ),
    teacher_case(
        "base-url-ftp",
        ("endpoints[0]", "base_url", "http(s) URL"),
        endpoints=[{"base_url": "ftp://h/v1", "model": "m"}],
    ),
    teacher_case(
        "base-url-without-host",
        ("endpoints[0]", "base_url 'http:///v1'", "with a host"),
        endpoints=[{"base_url": "http:///v1", "model": "m"}],
    ),
    teacher_case(
        "api-key-pasted",
        ("endpoints[0]", "api_key_env must name the environment variable", "not the key itself"),
        absent=(SECRET, SECRET[:12]),
        endpoints=[{"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": SECRET}],
    ),
    teacher_case(
        "api-key-token-shaped-name",
        ("endpoints[0]", "not the key itself"),
        absent=("ghp_",),
        endpoints=[
            {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "ghp_R4nd0mT0kenValue1234567890abcdEF"}
        ],
    ),
    teacher_case(
        "api-key-env-with-spaces",
        ("endpoints[0]", "api_key_env must name the environment variable"),
        endpoints=[{"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "my openai key"}],
    ),
    # ---- teacher overlays: local server and sampling
    teacher_case(
        "local-port-too-large",
        ("local_server", "key 'port' must be >= 0 and <= 65535, got 70000"),
        endpoints=None,
        local_server={"model_dir": "runs/smoke/tiny-model", "port": 70000},
    ),
    teacher_case(
        "local-startup-timeout-zero",
        ("local_server", "key 'startup_timeout_s' must be > 0, got 0"),
        endpoints=None,
        local_server={"model_dir": "runs/smoke/tiny-model", "startup_timeout_s": 0},
    ),
    teacher_case(
        "local-max-new-tokens-zero",
        ("local_server", "key 'max_new_tokens' must be >= 1, got 0"),
        endpoints=None,
        local_server={"model_dir": "runs/smoke/tiny-model", "max_new_tokens": 0},
    ),
    teacher_case("sampling-not-a-mapping", ("key 'sampling' expects dict", "'hot'"), sampling="hot"),
    teacher_case(
        "sampling-negative-temperature", ("sampling.temperature must be >= 0, got -1",), sampling={"temperature": -1}
    ),
    # the same checks whichever role the teacher plays
    teacher_case("judge-role-timeout", ("key 'timeout_s' must be > 0, got 0",), stage="judge", timeout_s=0),
    teacher_case(
        "completion-model-rpm",
        ("key 'requests_per_minute' must be > 0", NO_LIMIT),
        stage="completions",
        requests_per_minute=0,
    ),
    teacher_case(
        "self-instruct-teacher-prices",
        ("prices of model 'scripted'", PRICES_FIX),
        stage="self_instruct",
        prices={"scripted": {"input": True, "output": 1}},
    ),
    Case(
        "inline-teacher-in-a-recipe",
        "dialogues",
        args=["--teacher", "{endpoints: [{base_url: 'http://127.0.0.1:9/v1', model: m}], timeout_s: -5}"],
        fragments=("recipes/smoke/dialogues.yaml", "teacher", "key 'timeout_s' must be > 0, got -5"),
    ),
    # ---- stage recipes: bounds declared on the fields, given on the command line
    bound_case("si-requests-per-round", "self_instruct", "requests_per_round", "0", ">= 1"),
    bound_case("si-max-rounds", "self_instruct", "max_rounds", "0", ">= 1"),
    bound_case("si-instructions-per-request", "self_instruct", "instructions_per_request", "-1", ">= 1"),
    bound_case("si-num-instructions", "self_instruct", "num_instructions", "0", ">= 1"),
    bound_case("si-human-examples", "self_instruct", "human_examples", "0", ">= 1"),
    bound_case("si-instance-max-tokens", "self_instruct", "instance_max_tokens", "0", ">= 1"),
    bound_case("si-top-p-zero", "self_instruct", "top_p", "0", "> 0 and <= 1"),
    bound_case("si-rouge-threshold", "self_instruct", "rouge_threshold", "1.5", ">= 0 and <= 1"),
    bound_case("si-max-cost-zero", "self_instruct", "max_cost_usd", "0", "> 0", "omit the key for no budget"),
    Case(
        "si-min-words-above-max",
        "self_instruct",
        args=["--min_words", "10", "--max_words", "5"],
        fragments=("recipes/smoke/self_instruct.yaml", "min_words (10) must be <= max_words (5)"),
    ),
    bound_case("dlg-num-dialogues", "dialogues", "num_dialogues", "0", ">= 1"),
    bound_case("dlg-max-turns", "dialogues", "max_turns", "0", ">= 1"),
    bound_case("dlg-user-max-tokens", "dialogues", "user_max_tokens", "-8", ">= 1"),
    bound_case("dlg-top-p-above-one", "dialogues", "top_p", "1.01", "> 0 and <= 1"),
    bound_case("dlg-temperature-negative", "dialogues", "temperature", "-0.5", ">= 0"),
    Case(
        "dlg-min-turns-above-max",
        "dialogues",
        args=["--min_turns", "5", "--max_turns", "4"],
        fragments=("recipes/smoke/dialogues.yaml", "min_turns (5) must be <= max_turns (4)"),
    ),
    bound_case(
        "cmp-completions-per-prompt",
        "completions",
        "completions_per_prompt",
        "1",
        ">= 2",
        "a preference pair needs at least 2 completions per prompt",
    ),
    bound_case("cmp-num-prompts", "completions", "num_prompts", "0", ">= 1", "omit the key to use every prompt"),
    bound_case("cmp-max-tokens", "completions", "max_tokens", "-5", ">= 1"),
    bound_case("judge-max-reasks", "judge", "max_reasks", "-1", ">= 0"),
    bound_case("judge-num-prompts", "judge", "num_prompts", "0", ">= 1", "omit the key to judge every prompt"),
    bound_case("judge-min-margin", "judge", "min_margin", "-0.5", ">= 0"),
    bound_case("judge-max-tokens", "judge", "max_tokens", "0", ">= 1"),
    # ---- choices typed on the fields, and the rules between keys
    Case(
        "judge-mode-typo",
        "judge",
        args=["--mode", "logprob"],
        fragments=(
            "recipes/smoke/judge.yaml",
            "--mode",
            "key 'mode' expects one of 'text', 'logprobs', 'logprobs_local'",
            "did you mean 'logprobs'?",
        ),
    ),
    Case(
        "judge-strategy-typo",
        "judge",
        args=["--strategy", "random_lowr"],
        fragments=("recipes/smoke/judge.yaml", "key 'strategy' expects one of", "did you mean 'random_lower'?"),
    ),
    Case(
        "judge-unknown-aspect",
        "judge",
        args=["--aspects", "[honesty, honsty]"],
        fragments=("recipes/smoke/judge.yaml", "key 'aspects' expects list[one of 'instruction_following', 'honesty'"),
    ),
    Case(
        "judge-no-aspects",
        "judge",
        args=["--aspects", "[]"],
        fragments=("recipes/smoke/judge.yaml", "aspects is empty"),
    ),
    Case(
        "judge-overall-without-critique",
        "judge",
        args=["--score", "overall"],
        fragments=("recipes/smoke/judge.yaml", "score: overall needs the critique pass; set critique: true"),
    ),
    Case(
        "cmp-no-models",
        "completions",
        args=["--models", "[]"],
        fragments=("recipes/smoke/completions.yaml", "models is empty"),
    ),
    # ---- the same bounds written in a recipe file, and several at once
    recipe_case(
        "recipe-file-min-turns", "dialogues", "min_turns: 3", "min_turns: 0", ("key 'min_turns' must be >= 1, got 0",)
    ),
    recipe_case(
        "recipe-file-max-tokens",
        "self_instruct",
        "max_tokens: 96",
        "max_tokens: 0",
        ("key 'max_tokens' must be >= 1, got 0",),
    ),
    Case(
        "two-bounds-in-one-line",
        "dialogues",
        args=["--num_dialogues", "0", "--user_max_tokens", "0"],
        fragments=(
            "recipes/smoke/dialogues.yaml: 2 keys to fix",
            "'num_dialogues' must be >= 1",
            "'user_max_tokens' must be >= 1",
        ),
    ),
    # ---- bytes that are not UTF-8
    recipe_case(
        "recipe-latin-1",
        "dialogues",
        "num_dialogues: 12",
        'num_dialogues: 12\nsystem_prompt: "caf\xe9"',
        ("line ", "not valid UTF-8", "save it as UTF-8"),
    ),
    Case(
        "teacher-latin-1",
        "dialogues",
        files={"teacher.yaml": b"endpoints:\n  - {base_url: 'http://127.0.0.1:9/v1', model: caf\xe9}\n"},
        fragments=("teacher.yaml line 2", "not valid UTF-8", "save it as UTF-8"),
    ),
    Case(
        "seed-tasks-latin-1",
        "self_instruct",
        args=["--seed_tasks", "seeds.jsonl"],
        files={
            "seeds.jsonl": jsonl([{"instruction": "Say hi."}] * 2).encode() + b'{"instruction": "Caf\xe9 menu."}\n'
        },
        fragments=("seeds.jsonl line 3", "not valid UTF-8", "save it as UTF-8"),
    ),
    Case(
        "prompts-latin-1",
        "dialogues",
        files={"prompts.jsonl": b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'},
        fragments=("prompts.jsonl line 2", "not valid UTF-8", "save it as UTF-8"),
    ),
    Case(
        "completion-prompts-latin-1",
        "completions",
        files={"prompts.jsonl": b'{"prompt": "\xff\xfeo\x00k\x00"}\n'},
        fragments=("prompts.jsonl line 1", "not valid UTF-8", "save it as UTF-8"),
    ),
    Case(
        "pool-latin-1",
        "judge",
        files={
            "pool.jsonl": jsonl([POOL_ROW]).encode()
            + json.dumps(POOL_ROW).encode().replace(b"Red.", b"R\xe9d.")
            + b"\n"
        },
        fragments=("pool.jsonl line 2", "not valid UTF-8", "save it as UTF-8"),
    ),
    # ---- output_dir that cannot be written
    Case(
        "gen-output-dir-is-a-file",
        "dialogues",
        args=["--output_dir", "a-file"],
        files={"a-file": PRECIOUS},
        fragments=("recipes/smoke/dialogues.yaml", "output_dir 'a-file' is an existing file"),
    ),
    Case(
        "gen-output-dir-under-a-file",
        "judge",
        args=["--output_dir", "a-file/out"],
        files={"a-file": PRECIOUS},
        fragments=("recipes/smoke/judge.yaml", "output_dir 'a-file/out' cannot be created", "is a file"),
    ),
    Case(
        "gen-output-dir-cannot-be-created",
        "self_instruct",
        args=["--output_dir", "/proc/distill-validation/out"],
        fragments=("recipes/smoke/self_instruct.yaml", "output_dir '/proc/distill-validation/out' cannot be created"),
    ),
    Case(
        "sft-output-dir-is-a-file",
        "sft",
        args=["--output_dir", "a-file"],
        files={"a-file": PRECIOUS},
        fragments=("recipes/smoke/sft.yaml", "output_dir 'a-file' is an existing file"),
    ),
    Case(
        "dpo-output-dir-under-a-file",
        "dpo",
        args=["--output_dir", "a-file/model"],
        files={"a-file": PRECIOUS},
        fragments=("recipes/smoke/dpo.yaml", "output_dir 'a-file/model' cannot be created"),
    ),
    recipe_case(
        "sft-recipe-latin-1",
        "sft",
        "num_train_epochs: 3",
        "num_train_epochs: 3\n# r\xe9sum\xe9 of the run",
        ("line ", "not valid UTF-8", "save it as UTF-8"),
    ),
    # ---- SFT data with roles no chat template renders
    Case(
        "sft-sharegpt-roles",
        "sft",
        files={
            "sharegpt.jsonl": jsonl(
                [{"messages": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "yo"}]}] * 4
            )
        },
        recipe_edit=("bad-sft.yaml", "id: runs/smoke/data/sft", "id: sharegpt.jsonl"),
        fragments=(
            "bad-sft.yaml",
            "sharegpt.jsonl",
            "row 0",
            "role 'human'",
            "valid roles are system, user, assistant",
        ),
    ),
    Case(
        "sft-unknown-role-late",
        "sft",
        files={
            "late.jsonl": jsonl(
                [{"messages": GOOD_MESSAGES}] * 10
                + [{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}]
            )
        },
        recipe_edit=("bad-sft.yaml", "id: runs/smoke/data/sft", "id: late.jsonl"),
        fragments=("bad-sft.yaml", "late.jsonl", "row 10", "role 'bot'", "valid roles are system, user, assistant"),
    ),
]


@pytest.fixture(scope="module")
def server():
    with ScriptedOpenAIServer() as s:
        yield s


def _write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _prepare(case: Case, workspace, url: str) -> list[str]:
    """Valid inputs everywhere but where the case breaks one; returns the command."""
    teacher = teacher_mapping(url, **case.teacher_changes)
    files: dict[str, str | bytes] = {
        "teacher.yaml": yaml.safe_dump(teacher),
        "prompts.jsonl": jsonl([{"prompt": "Say hi."}]),
        "pool.jsonl": jsonl([POOL_ROW]),
        f"{OUT}/{SENTINEL}": PRECIOUS,
        **case.files,
    }
    if case.recipe_edit:
        name, old, new = case.recipe_edit
        text = (workspace / "recipes" / "smoke" / f"{case.stage}.yaml").read_text()
        assert old in text, f"the smoke recipe no longer has {old!r}"
        text = text.replace(old, new)
        files[name] = text.encode("latin-1") if any(ord(c) > 127 for c in new) else text
    for name, content in files.items():
        _write(workspace / name, content)
    cmd = stage_command(case.stage)
    if case.recipe_edit:
        cmd[2] = case.recipe_edit[0]  # the copied recipe replaces the smoke one
    return cmd + case.args


def _snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_at_validation(case, workspace, server):
    cmd = _prepare(case, workspace, server.base_url)
    before = _snapshot(workspace / "runs" / "out")
    others = {n: (workspace / n).read_bytes() for n in case.files if (workspace / n).is_file()}
    requests_before = server.stats.requests
    res = run_script(cmd, cwd=workspace, timeout=CASE_TIMEOUT_S, env={"DISTILL_TEST_KEY": "test-key"})

    assert res.returncode == 2, res.output[-3000:]
    assert "Traceback" not in res.output, res.output[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-3000:]
    for fragment in case.fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    for secret in case.absent:
        assert secret not in res.output, "a pasted key was echoed"
    assert server.stats.requests == requests_before, "a request was sent before validation refused the input"
    assert _snapshot(workspace / "runs" / "out") == before, "output_dir was touched"
    assert {n: (workspace / n).read_bytes() for n in others} == others, "an input file was changed"


def test_the_scripted_server_does_count_requests_when_input_is_valid(workspace):
    """The zero-request assertions above mean something: the same valid inputs do reach the server."""
    with ScriptedOpenAIServer() as server:
        cmd = _prepare(Case("valid", "dialogues"), workspace, server.base_url)
        res = run_script(
            cmd + ["--num_dialogues", "1", "--min_turns", "1", "--max_turns", "1"],
            cwd=workspace,
            timeout=CASE_TIMEOUT_S,
            env={"DISTILL_TEST_KEY": "test-key"},
        )
        assert res.returncode == 0, res.output[-3000:]
        assert server.stats.total_paid >= 1
    assert (workspace / OUT / "sft" / "train.jsonl").is_file()


def test_an_override_corrects_a_recipe_value_out_of_bounds(workspace, server):
    """Bounds hold for the merged values: the command line may fix what the recipe got wrong."""
    cmd = _prepare(
        recipe_case("fixed", "self_instruct", "max_rounds: 6", "max_rounds: 0", ()), workspace, server.base_url
    )
    res = run_script(
        cmd + ["--max_rounds", "2", "--dry_run", "true"],
        cwd=workspace,
        timeout=CASE_TIMEOUT_S,
        env={"DISTILL_TEST_KEY": "test-key"},
    )
    assert res.returncode == 0, res.output[-3000:]
    assert "estimated total" in res.stdout and server.stats.requests == 0


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into any directory")
def test_output_dir_without_write_permission(workspace, server):
    locked = workspace / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        cmd = _prepare(Case("locked", "completions"), workspace, server.base_url)
        res = run_script(cmd + ["--output_dir", "locked/out"], cwd=workspace, timeout=CASE_TIMEOUT_S)
    finally:
        locked.chmod(0o755)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "output_dir 'locked/out' cannot be created" in errors[0], res.stderr
    assert server.stats.requests == 0


def test_help_shows_the_bounds(workspace):
    res = run_script([sys.executable, script("run_dialogues.py"), "--help"], cwd=workspace, timeout=CASE_TIMEOUT_S)
    assert res.returncode == 0
    assert "--min_turns  (int, >= 1, default 3)" in res.stdout
    assert "--top_p  (float, > 0 and <= 1, default 0.9)" in res.stdout


# ---------------------------------------------------------------------------------------------------------------------
# In-process checks of the mechanism itself


def test_trl_sections_carry_no_bounds():
    """TRL's classes are parsed from source; their values are TRL's to check: the loader adds no bound of its own."""
    from distill_core.schema import DPO_CONFIG, MODEL_CONFIG, SFT_CONFIG, fields_of

    for ref in (SFT_CONFIG, DPO_CONFIG, MODEL_CONFIG):
        specs = fields_of(ref)
        assert specs and not [name for name, spec in specs.items() if spec.bounds or spec.fix]


def test_field_metadata_uses_only_known_keys():
    """A misspelt bound ("mni": 1) would silently check nothing."""
    import dataclasses

    from data_gen.completions import CompletionArguments
    from data_gen.dialogues import DialogueArguments
    from data_gen.endpoints import Endpoint, LocalServer, Sampling, TeacherConfig
    from data_gen.judge import JudgeArguments
    from data_gen.self_instruct import SelfInstructArguments
    from distill_core.schema import FIELD_METADATA_KEYS

    for cls in (
        SelfInstructArguments,
        DialogueArguments,
        CompletionArguments,
        JudgeArguments,
        TeacherConfig,
        LocalServer,
        Endpoint,
        Sampling,
    ):
        for f in dataclasses.fields(cls):
            assert set(f.metadata) <= FIELD_METADATA_KEYS, (cls.__name__, f.name, sorted(f.metadata))


def test_every_default_is_within_its_bounds():
    import dataclasses

    from data_gen.completions import CompletionArguments
    from data_gen.dialogues import DialogueArguments
    from data_gen.endpoints import LocalServer, Sampling, TeacherConfig
    from data_gen.judge import JudgeArguments
    from data_gen.self_instruct import SelfInstructArguments
    from distill_core.schema import fields_of, out_of_bounds

    for cls in (
        SelfInstructArguments,
        DialogueArguments,
        CompletionArguments,
        JudgeArguments,
        TeacherConfig,
        LocalServer,
        Sampling,
    ):
        for name, spec in fields_of(cls).items():
            if spec.default is not dataclasses.MISSING:
                assert out_of_bounds(spec.default, spec) is None, (cls.__name__, name)


def test_a_literal_alias_is_a_choice_under_postponed_annotations():
    """``mode: JudgeMode`` arrives as the string "JudgeMode" under ``from __future__ import annotations``; the schema
    resolves the module's Literal alias, so the loader checks the choice and offers a did-you-mean."""
    from data_gen.judge import JudgeArguments
    from data_gen.rating_vocabulary import ALL_ASPECTS, JUDGE_MODES
    from distill_core.schema import TypeSpec, fields_of

    specs = fields_of(JudgeArguments)
    assert specs["mode"].type == TypeSpec("choice", JUDGE_MODES)
    assert specs["aspects"].type == TypeSpec("list", (TypeSpec("choice", ALL_ASPECTS),))
    assert specs["pool"].type == TypeSpec("str") and specs["judge_model_dir"].type.kind == "union"


@pytest.mark.parametrize(
    "value,expected", [(0, "must be >= 1, got 0"), (float("nan"), "got nan"), (1, None), (None, None)]
)
def test_out_of_bounds(value, expected):
    from distill_core.schema import FieldSpec, TypeSpec, out_of_bounds

    spec = FieldSpec("n", TypeSpec("int"), 1, "", bounds=((">=", 1),))
    problem = out_of_bounds(value, spec)
    assert problem == expected if expected is None or expected.startswith("must") else expected in problem


def test_checked_prices_are_floats_and_price_needs_no_guessing(tmp_path):
    from data_gen.endpoints import load_teacher

    path = tmp_path / "t.yaml"
    path.write_text(
        yaml.safe_dump(teacher_mapping("http://127.0.0.1:9/v1", prices={"scripted": {"input": 2, "output": "5e-1"}}))
    )
    teacher = load_teacher(str(path), "test")
    assert teacher.prices == {"scripted": {"input": 2.0, "output": 0.5}}
    assert teacher.price("scripted") == (2.0, 0.5) and teacher.price("unpriced") == (0.0, 0.0)
