"""The check before a stage sends anything: is each endpoint up, does it take the key, is it the OpenAI API."""

from __future__ import annotations

import asyncio

from ..endpoints import Endpoint, TeacherConfig
from .aio import within
from .redaction import Redactor
from .replies import is_models_listing


async def check_reachable(
    teacher: TeacherConfig, endpoints: list[Endpoint], clients: list, redactor: Redactor
) -> None:
    """Fail fast with one clear line when an endpoint is down, rejects the key, or lacks the model."""
    import openai

    for endpoint, client in zip(endpoints, clients):
        where = f"endpoint {endpoint.base_url} (teacher '{teacher.name}')"
        timeout = min(10.0, teacher.timeout_s)
        try:
            raw = await within(timeout, client.models.with_raw_response.list(timeout=timeout))
            if not is_models_listing(raw.http_response):
                kind = raw.http_response.headers.get("content-type", "no content type").split(";")[0]
                raise redactor.endpoint_error(
                    f"{where} answered its models listing ({endpoint.base_url}/models) with {kind}, not the "
                    f"OpenAI API; fix base_url in the teacher config (an OpenAI-compatible base_url usually "
                    f"ends in /v1)"
                )
        except openai.AuthenticationError as exc:
            raise redactor.endpoint_error(
                f"{where} rejected the API key from ${endpoint.api_key_env} "
                f"({redactor.error_text(exc)}); export a valid key"
            ) from None
        except (openai.APIConnectionError, openai.APITimeoutError, asyncio.TimeoutError):
            raise redactor.endpoint_error(
                f"{where} is unreachable; start the server or fix base_url in the teacher config"
            ) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise redactor.endpoint_error(
                    f"{where} answered {exc.status_code} to a models listing; check the server"
                ) from None
            # some servers do not implement /models; the first request will tell
