"""Endpoint configuration: which OpenAI-compatible servers play a role, at what limits and prices.

A role (teacher, user simulator, judge) is described by a teacher file under ``recipes/teachers/``, named
in a recipe (``teacher: gpt-4``) or given inline. Swapping teachers is swapping that one name. API keys
are never in a file: the file names the environment variable that holds the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.errors import RecipeError
from distill_core.structs import build_strict, read_yaml_mapping

TEACHERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "teachers")


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
            raise RecipeError(f"endpoint {self.base_url} (model {self.model}) needs an API key in the environment "
                              f"variable {self.api_key_env}; export {self.api_key_env}=... and rerun")
        return key


@dataclass
class LocalServer:
    """An OpenAI-compatible server this run starts itself on 127.0.0.1 (``transformers serve``)."""

    model_dir: str
    port: int = 0  # 0 picks a free port
    startup_timeout_s: float = 180.0
    max_new_tokens: int = 256


@dataclass
class TeacherConfig:
    endpoints: list = field(default_factory=list)  # list of {base_url, model, api_key_env}; several = load-balanced replicas
    local_server: Optional[dict] = None  # {model_dir, port, startup_timeout_s}: start a local server instead
    max_concurrency: int = 16
    requests_per_minute: Optional[float] = None
    tokens_per_minute: Optional[float] = None
    timeout_s: float = 120.0
    max_retries: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    prices: dict = field(default_factory=dict)  # model -> {input: USD per 1M tokens, output: USD per 1M tokens}
    sampling: dict = field(default_factory=dict)  # default sampling params for this teacher (stage params win)
    name: str = ""

    def endpoint_list(self) -> list[Endpoint]:
        return [build_strict(Endpoint, e, f"teacher '{self.name}' endpoints[{i}]") for i, e in enumerate(self.endpoints)]

    def local(self) -> LocalServer | None:
        return build_strict(LocalServer, self.local_server, f"teacher '{self.name}' local_server") if self.local_server else None

    def price(self, model: str) -> tuple[float, float]:
        """USD per 1M (input, output) tokens; unknown models cost 0 (and are reported as unpriced)."""
        entry = self.prices.get(model)
        if entry is None:
            return 0.0, 0.0
        return float(entry.get("input", 0.0)), float(entry.get("output", 0.0))

    def public(self) -> dict[str, Any]:
        """What manifests and cards may record: endpoints and models, never a key."""
        return {
            "name": self.name,
            "endpoints": [{"base_url": e.base_url, "model": e.model, "api_key_env": e.api_key_env} for e in self.endpoint_list()],
            "local_server": self.local_server,
            "prices_usd_per_1m_tokens": self.prices,
            "limits": {"max_concurrency": self.max_concurrency, "requests_per_minute": self.requests_per_minute,
                       "tokens_per_minute": self.tokens_per_minute, "timeout_s": self.timeout_s, "max_retries": self.max_retries},
        }


def load_teacher(spec: Any, where: str) -> TeacherConfig:
    """A teacher by name (recipes/teachers/NAME.yaml), by path, or inline as a mapping."""
    if isinstance(spec, str):
        path = spec if spec.endswith((".yaml", ".yml")) else os.path.join(TEACHERS_DIR, f"{spec}.yaml")
        if not os.path.isfile(path):
            known = sorted(f[:-5] for f in os.listdir(TEACHERS_DIR) if f.endswith(".yaml")) if os.path.isdir(TEACHERS_DIR) else []
            raise RecipeError(f"{where}: teacher '{spec}' not found (no {path}); use one of {known} or a path to a teacher YAML")
        data, name, at = read_yaml_mapping(path, "teacher"), os.path.splitext(os.path.basename(path))[0], path
    else:
        data, name, at = spec, "inline", where
    config = build_strict(TeacherConfig, data, at)
    config.name = config.name or name
    if not config.endpoints and not config.local_server:
        raise RecipeError(f"{at}: a teacher needs 'endpoints' (base_url, model, api_key_env) or 'local_server' (model_dir)")
    if config.endpoints and config.local_server:
        raise RecipeError(f"{at}: give either 'endpoints' or 'local_server', not both")
    config.endpoint_list()  # validate each entry now, before any request
    config.local()
    if config.max_concurrency < 1 or config.max_retries < 0:
        raise RecipeError(f"{at}: max_concurrency must be >= 1 and max_retries >= 0")
    return config
