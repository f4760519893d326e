"""Which text of a training row is checked: user turns, assistant turns or both, in every format the project
writes or reads (``messages`` SFT rows, prompt sets, preference triples, completion pools).

A message list is read by role: ``user`` (and ``system``) turns are user text, ``assistant`` turns assistant text.
A plain string is user text under ``prompt``/``instruction``/``question`` and assistant text under
``chosen``/``rejected``/``completion``/``response``/``output``. A completion pool's ``completions`` are assistant
text. Each text is checked on its own: an n-gram never spans two turns.
"""

from __future__ import annotations

from typing import Iterator, Literal

Check = Literal["user", "assistant", "both"]
USER_COLUMNS = ("messages", "prompt", "instruction", "question")
ASSISTANT_COLUMNS = ("chosen", "rejected", "completion", "completions", "response", "output")
_USER_ROLES = {"user", "system", "human"}


def _message_texts(messages: list, column: str, check: Check) -> list[tuple[str, str]]:
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            continue
        side = "user" if message.get("role") in _USER_ROLES else "assistant"
        if check in ("both", side):
            out.append((f"{column}[{i}]", message["content"]))
    return out


def row_texts(row: dict, check: Check, columns: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(where, text) for each text of the row that is checked; ``where`` names the column and turn."""
    out: list[tuple[str, str]] = []
    for column in columns or (*USER_COLUMNS, *ASSISTANT_COLUMNS):
        value = row.get(column)
        if isinstance(value, str):
            side = "assistant" if column in ASSISTANT_COLUMNS else "user"
            if check in ("both", side):
                out.append((column, value))
        elif isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
            out.extend(_message_texts(value, column, check))
        elif isinstance(value, list) and check in ("both", "assistant"):
            for i, item in enumerate(value):
                text = item.get("text") if isinstance(item, dict) else item
                if isinstance(text, str):
                    out.append((f"{column}[{i}]", text))
    return out


def dataset_rows(dataset, batch_size: int = 1000) -> Iterator[dict]:
    """The rows of a ``datasets.Dataset`` as dicts, a batch of Arrow records converted at a time (far faster than
    indexing row by row)."""
    for batch in dataset.iter(batch_size=batch_size):
        names = list(batch)
        yield from (dict(zip(names, values)) for values in zip(*batch.values()))
