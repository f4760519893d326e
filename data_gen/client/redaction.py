"""Keeping API keys out of the journal, log lines and exception messages."""

from __future__ import annotations

import os
from typing import Any

from ..endpoints import Endpoint
from .errors import EndpointError

MIN_SECRET_CHARS = 8  # shorter "keys" (EMPTY, a test token) would redact ordinary words out of every message
_ERROR_CHARS = 300  # how much of a server's error message a record or log line keeps


class Redactor:
    """Replaces the secret values of API-key variables with ``[redacted $NAME]`` in text and in records."""

    def __init__(self, secrets: dict[str, str]):  # secret value -> name of its environment variable
        # longest first, so a key that contains another key is replaced whole
        self._pairs = sorted(
            (
                (value, f"[redacted ${name}]")
                for value, name in secrets.items()
                if value and len(value) >= MIN_SECRET_CHARS
            ),
            key=lambda pair: -len(pair[0]),
        )

    @classmethod
    def for_endpoints(cls, endpoints: list[Endpoint]) -> "Redactor":
        secrets: dict[str, str] = {}
        for endpoint in endpoints:
            if endpoint.api_key_env:
                secrets.setdefault(os.environ.get(endpoint.api_key_env, ""), endpoint.api_key_env)
        return cls(secrets)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def text(self, text: str) -> str:
        for secret, replacement in self._pairs:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string (keys included) redacted."""
        if not self._pairs:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def error_text(self, exc) -> str:
        """A server's error message, redacted, then cut to what a record or log line keeps."""
        # redact before cutting, so a key that straddles the cut cannot leave a prefix behind
        return self.text(error_message(exc))[:_ERROR_CHARS]

    def endpoint_error(self, message: str) -> EndpointError:
        return EndpointError(self.text(message))


def error_message(exc) -> str:
    """The message of an API error: the server's own ``error.message`` when its body has one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc)
