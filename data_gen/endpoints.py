"""Endpoint configuration: which OpenAI-compatible servers play a role, at what limits and prices.

A role (teacher, user simulator, judge) is described by a teacher file under ``recipes/teachers/``, named
in a recipe (``teacher: gpt-4``) or given inline. Swapping teachers is swapping that one name. API keys
are never in a file: the file names the environment variable that holds the key.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

from distill_core.errors import RecipeError
from distill_core.schema import TypeMismatch, TypeSpec, coerce, fields_of, out_of_bounds
from distill_core.structs import build_strict, named_yaml_path, read_yaml_mapping

TEACHERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "teachers")


NO_LIMIT = "omit the key for no limit"
PRICES_FIX = "write prices: {MODEL: {input: USD per 1M input tokens, output: USD per 1M output tokens}}"
KEY_ENV_REFUSAL = (
    "api_key_env must name the environment variable that holds the key, not the key itself (its value "
    "is not shown here); write e.g. api_key_env: OPENAI_API_KEY and export OPENAI_API_KEY=... in the shell"
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# prefixes of common API keys and tokens (OpenAI, Anthropic, Stripe, Hugging Face, GitHub, GitLab, AWS, Google)
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gho_", "ghs_", "github_pat_", "glpat-", "AKIA", "AIza")


@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key_env: Optional[str] = None  # name of the environment variable holding the key; None for open servers

    def api_key(self) -> str:
        if not self.api_key_env:
            return "EMPTY"  # local servers (vLLM, TGI, transformers serve) accept any key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RecipeError(
                f"endpoint {self.base_url} (model {self.model}) needs an API key in the environment "
                f"variable {self.api_key_env}; export {self.api_key_env}=... and rerun"
            )
        return key

    def check(self, where: str) -> None:
        try:
            parts = urlsplit(self.base_url)
            parts.port  # noqa: B018  (parsing the port raises on a malformed one)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise RecipeError(
                f"{where}: base_url {self.base_url!r} is not an http(s) URL with a host; "
                f"write e.g. base_url: http://localhost:8000/v1"
            )
        if self.api_key_env is not None and looks_like_a_key(self.api_key_env):
            raise RecipeError(f"{where}: {KEY_ENV_REFUSAL}")


def looks_like_a_key(name: str) -> bool:
    """Whether an api_key_env value is a pasted key rather than an environment variable name.

    Anything that is not a valid name is refused; among valid names, a known key prefix, or a long run of mixed
    case and digits or of high character entropy (names are conventionally short, upper case words) gives a
    pasted key away.
    """
    if not _ENV_NAME.fullmatch(name) or name.startswith(_KEY_PREFIXES):
        return True
    if len(name) < 24:
        return False
    mixed = any(c.islower() for c in name) and any(c.isupper() for c in name) and any(c.isdigit() for c in name)
    return mixed or _entropy_bits(name) > 4.3


def _entropy_bits(text: str) -> float:
    counts = {c: text.count(c) for c in set(text)}
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


@dataclass
class LocalServer:
    """An OpenAI-compatible server this run starts itself on 127.0.0.1: ``transformers serve`` (any machine) or
    ``vllm serve`` (a GPU node with vLLM installed)."""

    model_dir: str
    backend: Literal["transformers", "vllm"] = "transformers"
    extra_args: list[str] = field(default_factory=list)  # appended to the serve command: [--max-model-len, "8192"]
    port: int = field(default=0, metadata={"help": "0 picks a free port.", "min": 0, "max": 65535})
    startup_timeout_s: float = field(default=180.0, metadata={"exclusive_min": 0})
    max_new_tokens: int = field(default=256, metadata={"min": 1})


@dataclass
class Sampling:
    """Bounds of the sampling defaults a teacher file may set; any other OpenAI parameter passes through as given."""

    temperature: float = field(default=1.0, metadata={"min": 0})
    top_p: float = field(default=1.0, metadata={"exclusive_min": 0, "max": 1})
    max_tokens: int = field(default=256, metadata={"min": 1})


@dataclass
class TeacherConfig:
    endpoints: list = field(
        default_factory=list
    )  # list of {base_url, model, api_key_env}; several = load-balanced replicas
    local_server: Optional[dict] = None  # {model_dir, backend, port, startup_timeout_s}: start a local server instead
    max_concurrency: int = field(default=16, metadata={"min": 1})
    requests_per_minute: Optional[float] = field(default=None, metadata={"exclusive_min": 0, "fix": NO_LIMIT})
    tokens_per_minute: Optional[float] = field(default=None, metadata={"exclusive_min": 0, "fix": NO_LIMIT})
    timeout_s: float = field(default=120.0, metadata={"exclusive_min": 0})
    max_retries: int = field(default=8, metadata={"min": 0})
    backoff_base_s: float = field(default=0.5, metadata={"exclusive_min": 0})
    backoff_max_s: float = field(default=60.0, metadata={"exclusive_min": 0})
    # model -> {input: USD per 1M tokens, output: USD per 1M tokens}; checked and made floats by check()
    prices: dict = field(default_factory=dict, metadata={"fix": PRICES_FIX})
    sampling: dict = field(default_factory=dict)  # default sampling params for this teacher (stage params win)
    name: str = ""

    def endpoint_list(self) -> list[Endpoint]:
        return [
            build_strict(Endpoint, e, f"teacher '{self.name}' endpoints[{i}]") for i, e in enumerate(self.endpoints)
        ]

    def local(self) -> LocalServer | None:
        return (
            build_strict(LocalServer, self.local_server, f"teacher '{self.name}' local_server")
            if self.local_server
            else None
        )

    def check(self, at: str) -> None:
        """Every value, before the first request; the single-key bounds were checked by build_strict."""
        if not self.endpoints and not self.local_server:
            raise RecipeError(
                f"{at}: a teacher needs 'endpoints' (base_url, model, api_key_env) or 'local_server' (model_dir)"
            )
        if self.endpoints and self.local_server:
            raise RecipeError(f"{at}: give either 'endpoints' or 'local_server', not both")
        for i, entry in enumerate(self.endpoints):
            build_strict(Endpoint, entry, f"{at}: endpoints[{i}]").check(f"{at}: endpoints[{i}]")
        if self.local_server is not None:
            build_strict(LocalServer, self.local_server, f"{at}: local_server")
        if self.backoff_max_s < self.backoff_base_s:
            raise RecipeError(
                f"{at}: backoff_max_s ({self.backoff_max_s}) must be >= backoff_base_s ({self.backoff_base_s}); "
                f"raise backoff_max_s or lower backoff_base_s"
            )
        self.prices = _checked_prices(self.prices, at)
        _check_sampling(self.sampling, at)

    def price(self, model: str) -> tuple[float, float]:
        """USD per 1M (input, output) tokens; unknown models cost 0 (and are reported as unpriced)."""
        entry = self.prices.get(model)
        return (entry["input"], entry["output"]) if entry else (0.0, 0.0)

    def public(self) -> dict[str, Any]:
        """What manifests and cards may record: endpoints and models, never a key."""
        return {
            "name": self.name,
            "endpoints": [
                {"base_url": e.base_url, "model": e.model, "api_key_env": e.api_key_env} for e in self.endpoint_list()
            ],
            "local_server": self.local_server,
            "prices_usd_per_1m_tokens": self.prices,
            "limits": {
                "max_concurrency": self.max_concurrency,
                "requests_per_minute": self.requests_per_minute,
                "tokens_per_minute": self.tokens_per_minute,
                "timeout_s": self.timeout_s,
                "max_retries": self.max_retries,
            },
        }


def _checked_prices(prices: dict, at: str) -> dict[str, dict[str, float]]:
    """{model: {input, output}} with both prices finite numbers >= 0: a price that is wrong, or missing half, would
    make the cost, the dry-run estimate and the max_cost_usd stop silently wrong."""
    checked = {}
    for model, entry in prices.items():
        here = f"{at}: prices of model '{model}'"
        if not isinstance(entry, dict):
            raise RecipeError(f"{here} must be a mapping {{input, output}}, got {entry!r}; {PRICES_FIX}")
        unknown = sorted(str(k) for k in entry if k not in ("input", "output"))
        if unknown:
            raise RecipeError(f"{here}: unknown key '{unknown[0]}' (a price has only input and output); {PRICES_FIX}")
        pair = {}
        for side in ("input", "output"):
            if side not in entry:
                raise RecipeError(f"{here}: '{side}' is missing; {PRICES_FIX}")
            try:
                value = float(coerce(entry[side], TypeSpec("float")))
            except TypeMismatch:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                raise RecipeError(
                    f"{here}: '{side}' must be a number >= 0 (USD per 1M {side} tokens), "
                    f"got {entry[side]!r}; {PRICES_FIX}"
                )
            pair[side] = value
        checked[str(model)] = pair
    return checked


def _check_sampling(sampling: dict, at: str) -> None:
    specs = fields_of(Sampling)
    for key, raw in sampling.items():
        if not isinstance(key, str):
            raise RecipeError(
                f"{at}: sampling key {key!r} is not a parameter name; write sampling: {{temperature: 0.7, ...}}"
            )
        if key not in specs:
            continue  # other OpenAI parameters (stop, presence_penalty, ...) are the endpoint's to judge
        try:
            value = coerce(raw, specs[key].type)
        except TypeMismatch:
            raise RecipeError(
                f"{at}: sampling.{key} expects {specs[key].type.describe()}, got {raw!r}; fix the value"
            ) from None
        problem = out_of_bounds(value, specs[key])
        if problem:
            raise RecipeError(f"{at}: sampling.{key} {problem}; fix the value")


def load_teacher(spec: Any, where: str) -> TeacherConfig:
    """A teacher by name (recipes/teachers/NAME.yaml), by path, or inline as a mapping; fully checked."""
    if isinstance(spec, str):
        path = named_yaml_path(spec, TEACHERS_DIR, "teacher", where)
        data, name, at = read_yaml_mapping(path, "teacher"), os.path.splitext(os.path.basename(path))[0], path
    else:
        data, name, at = spec, "inline", where
    config = build_strict(TeacherConfig, data, at)
    config.name = config.name or name
    config.check(at)
    return config
