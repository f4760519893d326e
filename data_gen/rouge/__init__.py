"""ROUGE-L novelty filtering for Self-Instruct, with the exact decisions of ``rouge_score`` at a fraction of the cost.

Self-Instruct drops a generated instruction when its ROUGE-L F1 with any instruction already in the pool is
strictly greater than 0.7, scoring every pair with ``rouge_scorer.RougeScorer(["rougeL"])``. That is quadratic
in the pool and dominated by a pure-Python LCS table. :class:`RougeLFilter` reaches the same decisions by:

* tokenizing exactly as ``rouge_score``'s default tokenizer (no stemmer) does;
* bounding every pool member's F1 at once from the multiset token overlap (``LCS <= overlap``), through an
  inverted index of numpy arrays, so one candidate costs a few vectorised operations per distinct token;
* computing the exact LCS only for members whose bound can still matter, with a bit-parallel LCS run over all
  of them together as numpy ``uint64`` words (members longer than 64 tokens use Python integers instead);
* turning the LCS into an F1 with the very floating-point operations ``rouge_score`` performs, because the
  rounded value is what gets compared with the threshold: ``2L / (m + n) == 0.7`` exactly can round either way.

Modules: ``scoring``, the tokenizer, LCS and F1 of one pair; ``novelty_filter``, the pool and its pruned search.
"""

from .novelty_filter import DEFAULT_THRESHOLD, RougeLFilter, Verdict
from .scoring import lcs_length, rouge_l_f1, tokenize

__all__ = ["tokenize", "lcs_length", "rouge_l_f1", "Verdict", "RougeLFilter", "DEFAULT_THRESHOLD"]
