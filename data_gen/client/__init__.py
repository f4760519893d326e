"""The one way this project calls an LLM: an async OpenAI-compatible client with limits, retries, journal and costs.

Used by every stage that talks to a teacher, a user simulator or a judge. Guarantees:
- at most ``max_concurrency`` requests in flight, and requests/tokens per minute under the configured limits;
- every attempt has a total deadline of ``timeout_s`` (a server that drips its reply slowly times out too);
- 429, 5xx, timeouts, dropped connections and malformed replies (not JSON, no choices, no message) are retried
  with exponential backoff and full jitter, at most ``max_retries`` times; a 429's Retry-After is honoured
  (``retry-after-ms``, seconds, or an HTTP date); what still fails is journaled as failed and retried on the
  next run;
- a context-length error is retried at once with a max_tokens that fits;
- a well-formed reply is journaled, with its usage and cost, before anything else is done with it, and nothing
  after that point can turn it into a retry: prices that cannot be used give the record a ``cost_error`` and a
  cost of 0 instead of a second payment;
- a request found in the journal is never sent again, and identical requests (same key) asked for at the same
  time, within one ``run`` or by concurrent callers sharing the journal, are sent once and share the result;
- the values of the endpoints' API-key variables (8 characters or more) never reach the journal, a log line or
  an exception message: a server that echoes the key is written down as ``[redacted $VAR]``;
- ``run`` leaves no task behind: when a request raises (bad key, Ctrl-C, cancellation) every other request of
  that run is cancelled and awaited before the exception propagates, and ``close`` does the same for anything
  still running;
- ``finish_reason == "length"`` replies are flagged ``truncated``; the stage decides to keep or drop them.

Modules, one idea each:

- ``chat_client``: ChatClient, a role's endpoints behind ``run``, and the retry loop of one request;
- ``results``: ChatRequest, ChatResult and the journal records they are written as;
- ``replies`` and ``failures``: reading a reply, and what a failed attempt means (retry, fail, stop);
- ``limits``: the rate limiters and the rotation over endpoints;
- ``costs``: the shared budget, the price of a reply and token estimates;
- ``redaction``: keeping API keys out of records, logs and errors;
- ``reachability``: the check that each endpoint is up before anything is sent;
- ``aio``: the total deadline of an attempt and cancelling what a run leaves.
"""

from .chat_client import ChatClient
from .costs import Budget, estimate_tokens, request_cost_usd
from .errors import BudgetExceeded, EndpointError
from .limits import TokenBucket
from .results import ChatRequest, ChatResult

__all__ = [
    "Budget",
    "BudgetExceeded",
    "ChatClient",
    "ChatRequest",
    "ChatResult",
    "EndpointError",
    "TokenBucket",
    "estimate_tokens",
    "request_cost_usd",
]
