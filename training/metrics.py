"""The last logged value of each metric: what the model card and the training manifest both report.

Kept apart from the card and from trainer set-up so that each of those imports it and neither imports the other.
"""

from __future__ import annotations


def metrics_summary(log_history: list[dict]) -> dict[str, float]:
    """The last logged value of each metric (train loss, rewards/accuracies, ...)."""
    last: dict[str, float] = {}
    for record in log_history:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                last[key] = value
    return last
