"""Preference data in TRL's explicit-prompt formats: the prompt taken from the turns chosen and rejected share."""

from __future__ import annotations

import logging

from distill_core.errors import DataError

from .columns import column_shape
from .mixture import DatasetSpec

# The loader's logger: these lines report on loading the mixture, under the name its other lines carry.
logger = logging.getLogger("training.data")


def prepare_preference_columns(ds, spec: DatasetSpec, layout: tuple[str, ...], source: str):
    """Bring a preference dataset into one of TRL's two explicit-prompt formats, checking the column shapes.

    Accepted shapes:
    - text prompt, text chosen/rejected (TRL's standard format): kept as is;
    - message-list prompt, message-list chosen/rejected holding only the answer (TRL's conversational format);
    - chosen/rejected that are whole conversations, with no prompt or with a text prompt beside them, as in
      ``HuggingFaceH4/ultrafeedback_binarized``: the messages both share become the prompt and the rest the
      answers, so the user turn is never fed twice. Rows whose answers are identical or missing are dropped.
    """
    ds = ds.select_columns(list(layout))
    chosen, rejected = column_shape(ds, spec, "chosen", source), column_shape(ds, spec, "rejected", source)
    prompt = column_shape(ds, spec, "prompt", source) if "prompt" in layout else None
    where = f"{source}: dataset '{spec.id}' split '{spec.split}'"
    if chosen != rejected:
        raise DataError(f"{where} has {chosen} 'chosen' but {rejected} 'rejected'; give both the same shape")
    if chosen == "text":
        if prompt == "conversation":
            raise DataError(
                f"{where} has a message-list 'prompt' but text answers; make 'chosen' and 'rejected' "
                f"message lists too, or render the prompt as text"
            )
        return ds
    first = ds[0]
    if prompt == "conversation" and first["chosen"][0]["role"] == "assistant":
        return ds  # TRL's conversational format as it is
    ds = ds.map(
        _split_shared_prefix,
        remove_columns=list(layout),
        desc="taking the shared prefix of chosen/rejected as the prompt",
    )
    kept = ds.filter(lambda row: row["_usable"])
    dropped = len(ds) - len(kept)
    mismatched = sum(kept["_prompt_mismatch"]) if prompt == "text" else 0
    kept = kept.remove_columns(["_usable", "_prompt_mismatch"]).select_columns(["prompt", "chosen", "rejected"])
    logger.info(
        "%s: chosen/rejected hold whole conversations; their shared prefix is the prompt%s (%d rows, %d dropped "
        "with identical or missing answers)",
        spec.id,
        " and the 'prompt' column is not used" if prompt else "",
        len(kept),
        dropped,
    )
    if mismatched:
        logger.warning(
            "%s: in %d rows the text 'prompt' differs from the last user turn of the shared prefix; the "
            "conversation's own turns are used",
            spec.id,
            mismatched,
        )
    if len(kept) == 0:
        raise DataError(
            f"{where}: no row has distinct chosen and rejected answers after the shared prompt; check the data"
        )
    return kept


def _split_shared_prefix(row: dict) -> dict:
    chosen, rejected = row["chosen"], row["rejected"]
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and chosen[k - 1]["role"] == "assistant" and (k == len(chosen) or k == len(rejected)):
        k -= 1  # an answer both sides share is still an answer: the prompt ends before it
    while k > 0 and chosen[k - 1]["role"] == "assistant" and chosen[k]["role"] == "assistant":
        k -= 1
    prompt, good, bad = chosen[:k], chosen[k:], rejected[k:]
    usable = (
        bool(prompt)
        and bool(good)
        and bool(bad)
        and good != bad
        and good[0]["role"] == "assistant"
        and bad[0]["role"] == "assistant"
    )
    users = [m["content"] for m in prompt if m["role"] == "user"]
    text = row.get("prompt")
    mismatch = isinstance(text, str) and bool(users) and text.strip() != users[-1].strip()
    return {"prompt": prompt, "chosen": good, "rejected": bad, "_usable": usable, "_prompt_mismatch": mismatch}
