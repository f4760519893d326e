"""Model-level contamination scores: Min-K% Prob and Min-K%++ of texts under a causal LM, and their AUC.

Per text, the model gives every scored token its log-probability log p(x_i | x_<i) and, from the full next-token
distribution at that position, mu_i = sum_v p_v log p_v and sigma_i^2 = sum_v p_v (log p_v)^2 - mu_i^2.

- Min-K% Prob: the mean of the lowest ceil(k * n) log-probabilities (at least one) of the n scored tokens.
- Min-K%++: the same mean over the normalised values (log p(x_i | x_<i) - mu_i) / sigma_i (0 where sigma_i is 0,
  a distribution that gives every token the same probability).

Higher means more likely seen in training. Neither score has a universal threshold: it depends on the model, the
tokenizer and the kind of text, so a check compares benchmark items (member candidates) with non-members of the
same kind and reports the AUC (the probability that a random member outscores a random non-member; 0.5 = no
signal).

Which tokens are scored: a text is encoded as the tokenizer encodes it by default (``add_special_tokens=True``),
as the model read its training text. Special tokens the tokenizer adds (Mistral's and Llama's BOS, an appended
EOS) condition the next token but are never scored themselves, so with a BOS the first real token is scored given
BOS alone; without one the first token has no context and is not scored. ``max_length`` truncates the encoded
sequence (special tokens included) from the right.

Batches are right-padded: padded positions are masked out of attention and never scored, so a text scores the
same alone or in any batch. The log-softmax runs in float64 whatever the model's dtype. torch is imported only
when a model is run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distill_core.errors import DataError

NO_THRESHOLD = (
    "There is no universal threshold for Min-K% Prob or Min-K%++: a score depends on the model, its tokenizer and "
    "the kind of text. Judge contamination only by comparing member candidates with non-members of the same kind "
    "(the AUC here), never by a score alone."
)


@dataclass
class TokenScores:
    """One text's scored tokens: log p(x_i | x_<i) and the Min-K%++ normalised value, in text order."""

    log_probs: list[float]
    normalized: list[float]
    truncated: bool = False


def lowest_count(n: int, k: float) -> int:
    """ceil(k * n), at least 1: the number of tokens Min-K% averages. The product is rounded to 9 decimals first,
    so that k = 0.1 of 30 tokens is 3, not the 4 that 0.1 * 30 = 3.0000000000000004 would give."""
    if not 0 < k <= 1:
        raise ValueError(f"k = {k}: give a fraction in (0, 1], e.g. 0.2")
    if n < 1:
        raise ValueError("no scored tokens: Min-K% needs at least one")
    return max(1, math.ceil(round(k * n, 9)))


def mean_of_lowest(values: list[float], k: float) -> float:
    lowest = sorted(values)[: lowest_count(len(values), k)]
    return sum(lowest) / len(lowest)


def min_k_prob(scores: TokenScores | list[float], k: float = 0.2) -> float:
    """Min-K% Prob: the mean of the lowest k fraction of a text's token log-probabilities."""
    return mean_of_lowest(scores.log_probs if isinstance(scores, TokenScores) else scores, k)


def min_k_plus_plus(scores: TokenScores | list[float], k: float = 0.2) -> float:
    """Min-K%++: the mean of the lowest k fraction of a text's normalised token log-probabilities."""
    return mean_of_lowest(scores.normalized if isinstance(scores, TokenScores) else scores, k)


def encode_texts(tokenizer, texts: list[str], max_length: int | None) -> list[tuple[list[int], list[int], bool]]:
    """(token ids, special-token mask, truncated) per text, encoded as the tokenizer does by default and cut to
    ``max_length`` tokens. A text with no scored token (nothing after its first token or added specials) is an
    error."""
    out = []
    for index, text in enumerate(texts):
        enc = tokenizer(text, add_special_tokens=True, return_special_tokens_mask=True)
        ids, special = list(enc["input_ids"]), list(enc["special_tokens_mask"])
        truncated = max_length is not None and len(ids) > max_length
        if truncated:
            ids, special = ids[:max_length], special[:max_length]
        if all(special[1:]):
            raise DataError(
                f"text {index} ({text[:40]!r}) has no token to score after its first; give texts of two tokens or "
                f"more{'' if max_length is None else f', or a max_length above {max_length}'}"
            )
        out.append((ids, special, truncated))
    return out


CHUNK = 256  # positions at a time: bounds the float64 (positions x vocabulary) temporaries: 256 x 152k is 311 MB each


def position_scores(torch, logits, targets):
    """(log p of each target, its Min-K%++ value) from one text's logits, in float64.

    float64, because near a flat distribution (a small sigma) float32 loses the digits that (log p - mu) / sigma
    magnifies; and sigma is taken as sum_v p (log p - mu)^2, equal to sum_v p (log p)^2 - mu^2 without the
    cancellation of that difference."""
    log_p = torch.log_softmax(logits.double(), dim=-1)
    token_lp = log_p.gather(1, targets[:, None])[:, 0]
    p = log_p.exp()
    mu = -torch.special.entr(p).sum(-1)  # sum_v p log p, with 0 log 0 = 0
    centred = torch.where(p > 0, log_p - mu[:, None], torch.zeros_like(p))
    sigma = (p * centred.square()).sum(-1).sqrt()
    normalized = torch.where(sigma > 0, (token_lp - mu) / torch.where(sigma > 0, sigma, 1), 0)
    return token_lp, normalized


def _score_rows(torch, logits, batch: list[tuple[list[int], list[int], bool]]) -> list[TokenScores]:
    """Scores of each row of a right-padded batch from its logits; only real, non-special targets are kept."""
    rows = []
    for row, (ids, special, truncated) in enumerate(batch):
        targets = torch.tensor(ids[1:], device=logits.device)  # position t predicts token t + 1
        predicting = logits[row, : len(ids) - 1]  # the last real position predicts nothing scored
        chunks = [
            position_scores(torch, predicting[start : start + CHUNK], targets[start : start + CHUNK])
            for start in range(0, len(targets), CHUNK)
        ]
        token_lp, normalized = (torch.cat(parts) for parts in zip(*chunks))
        keep = torch.tensor([not s for s in special[1:]], device=logits.device)
        rows.append(TokenScores(token_lp[keep].tolist(), normalized[keep].tolist(), truncated))
    return rows


def token_log_probs(
    model,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    progress: str | None = None,
) -> list[TokenScores]:
    """Each text's scored tokens under ``model`` (on its own device), in the order of ``texts``.

    Texts are batched by length (less padding), right-padded, and the padding masked out of attention. With
    ``progress`` (its label), a progress bar counts the texts scored."""
    import torch
    from tqdm import tqdm

    encoded = encode_texts(tokenizer, texts, max_length)
    bar = tqdm(total=len(texts), desc=progress, unit="text", dynamic_ncols=True, disable=progress is None)
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]))
    results: list[TokenScores | None] = [None] * len(texts)
    for start in range(0, len(order), max(1, batch_size)):
        members = order[start : start + batch_size]
        batch = [encoded[i] for i in members]
        width = max(len(ids) for ids, _, _ in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)  # the pad id never matters: it is masked
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, _, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        for i, scores in zip(members, _score_rows(torch, logits, batch)):
            results[i] = scores
        bar.update(len(members))
    bar.close()
    return results


def auc(members: list[float], non_members: list[float]) -> float:
    """ROC AUC of members (positives) against non-members by the rank statistic (Mann-Whitney U): the share of
    (member, non-member) pairs where the member scores higher, ties counting one half."""
    if not members or not non_members:
        raise ValueError("AUC needs at least one member and one non-member score")
    values = sorted([(v, 1) for v in members] + [(v, 0) for v in non_members])
    rank_sum, i = 0.0, 0
    while i < len(values):
        j = i
        while j < len(values) and values[j][0] == values[i][0]:
            j += 1
        midrank = (i + 1 + j) / 2  # ranks i+1..j share their mean
        rank_sum += midrank * sum(label for _, label in values[i:j])
        i = j
    n_pos, n_neg = len(members), len(non_members)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
