"""What the client raises, and the one kind of bad reply it retries by type."""

from __future__ import annotations

from distill_core.errors import UserError


class EndpointError(UserError):
    """An endpoint that cannot serve this run at all (unreachable, bad key, unknown model)."""


class BudgetExceeded(Exception):
    """max_cost_usd was reached; everything finished so far is in the journal."""


class MalformedReply(ValueError):
    """A 200 reply without the parts every chat completion has; retried like a garbled one."""
