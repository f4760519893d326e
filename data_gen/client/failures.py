"""What a failed attempt means: retry (after how long, with what max_tokens), journal a failure, or stop the run."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from ..endpoints import Endpoint
from .errors import MalformedReply
from .redaction import Redactor, error_message

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 600.0  # a server asking for longer is better answered by failing now and retrying next run
_CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens.*?\((\d+) in the messages", re.S)


@dataclass(frozen=True)
class AttemptFailure:
    """One attempt's failure, as the retry loop acts on it."""

    error: str  # why, for the log and, when nothing better comes, the failure record
    final: bool = False  # journal the failure now: sending again would fail the same way
    delay: float | None = None  # seconds to wait before the next attempt; None: exponential backoff
    rate_limited: bool = False  # a 429: the endpoint is passed over until the delay is up
    max_tokens: int | None = None  # the request did not fit the context: the next attempt asks for this many


def attempt_failure(
    exc: Exception, endpoint: Endpoint, params: dict, redactor: Redactor, timeout_s: float
) -> AttemptFailure:
    """How to go on after ``exc``. Raises EndpointError for an endpoint that cannot serve the run at all (refused
    key, unknown model), and ``exc`` itself when it is not an endpoint's failure."""
    import openai

    if isinstance(exc, openai.RateLimitError):
        return AttemptFailure("429 rate limited", delay=retry_after(exc), rate_limited=True)
    if isinstance(exc, openai.BadRequestError):
        fitted = fit_max_tokens(exc, params)
        if fitted is None:
            return AttemptFailure(f"400: {redactor.error_text(exc)}", final=True)
        logger.info(
            "context length exceeded at %s: retrying with max_tokens=%d", redactor.text(endpoint.base_url), fitted
        )
        return AttemptFailure("context length", delay=0.0, max_tokens=fitted)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        raise redactor.endpoint_error(
            f"endpoint {endpoint.base_url} refused the request ({exc.status_code}: "
            f"{redactor.error_text(exc)}); check the key in "
            f"${endpoint.api_key_env}"
        ) from None
    if isinstance(exc, openai.NotFoundError):
        raise redactor.endpoint_error(
            f"endpoint {endpoint.base_url} does not serve model '{endpoint.model}'; fix 'model' in the teacher config"
        ) from None
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code < 500 and exc.status_code not in (408, 409):
            return AttemptFailure(f"{exc.status_code}: {redactor.error_text(exc)}", final=True)
        return AttemptFailure(f"{exc.status_code} server error: {redactor.error_text(exc)}")
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)):
        return AttemptFailure(f"timeout (no complete reply within {timeout_s:g} s)")
    if isinstance(exc, openai.APIConnectionError):
        return AttemptFailure("connection dropped")
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):  # not JSON, cut short, or no choices
        # the parser's own message names a byte offset that differs per reply; failures should group
        return AttemptFailure(f"malformed reply ({exc if isinstance(exc, MalformedReply) else type(exc).__name__})")
    raise exc


def retry_after(exc) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or as an HTTP date."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        seconds = _seconds_or_date(value.strip(), scale)
        if seconds is not None:
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    return None


def _seconds_or_date(value: str, scale: float) -> float | None:
    try:
        seconds = float(value) * scale
        return seconds if math.isfinite(seconds) else None
    except ValueError:
        pass
    if scale != 1.0:
        return None  # only Retry-After itself may be a date
    try:
        when = email.utils.parsedate_to_datetime(value)  # RFC 7231 IMF-fixdate, also the obsolete forms
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone claimed
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def fit_max_tokens(exc, params: dict) -> int | None:
    """For a context-length 400, the largest max_tokens that fits; None if it is another 400 or nothing fits."""
    match = _CONTEXT_RE.search(error_message(exc))
    if not match:
        return None
    window, prompt = int(match.group(1)), int(match.group(2))
    fitted = window - prompt - 1
    current = params.get("max_tokens")
    if fitted < 1 or (current is not None and fitted >= current):
        return None
    return fitted
