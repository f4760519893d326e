"""AlpacaEval's length-controlled win rate: a logistic model of the preference with three terms and no intercept,
read at a length difference of zero.

    logit P(model beats baseline on instruction i) = g * tanh(dlen_i / sd) + difficulty term_i + model term

dlen is the baseline's output length minus the model's, in characters, and sd its standard deviation over the
model's rows (not centred, so a model that is longer on average keeps that shift). Preferences are soft labels
(preference - 1, in [0, 1]); unannotated rows are left out. LC = 100 * the mean predicted probability over the
model's instructions with the length term set to zero.

Two ways to get the difficulty term:

- ``file``: a difficulty per instruction is given (``alpaca_eval_difficulty``: a JSON object {instruction text:
  number}, or JSON lines {"instruction": ..., "difficulty": ...}), as AlpacaEval fits it once over many models; the
  term is that value times a coefficient fitted per model.
- ``joint``: without such a file, one difficulty per instruction is fitted jointly over the models judged together
  (each with its own length and model terms), shrunk towards 0 by an L2 penalty. With one or two models the
  difficulties are weakly determined and the model term absorbs their mean, so the number is less comparable
  with AlpacaEval's published LC than the ``file`` method; the note in scores.json says so.

Both are fitted by maximum likelihood (L-BFGS) with a small L2 penalty on every coefficient; AlpacaEval's
cross-validated L1 fit and its two deliberately verbose/concise baselines are not reproduced.
"""

from __future__ import annotations

import json

import numpy as np
from scipy.optimize import minimize

from distill_core.errors import DataError

from .reference_files import read_json_records

RIDGE = 1e-3  # on every coefficient: keeps a separable fit finite
DIFFICULTY_L2 = 1.0  # on the jointly fitted difficulties
NOTES = {
    "file": "difficulty per instruction from {path}; length and model terms fitted per model",
    "joint": (
        "no difficulty file: per-instruction difficulties fitted jointly over the {n} model(s) judged together "
        "(L2-shrunk); with few models they are weakly determined, so compare with published LC numbers cautiously"
    ),
}


def read_difficulty(path: str, instructions: list[str]) -> dict[str, float]:
    """{instruction: difficulty} from a JSON object or JSON lines (instruction, difficulty); every one under test."""
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)  # one JSON object
    except (json.JSONDecodeError, OSError):
        found = None
    if not isinstance(found, dict) or "difficulty" in found:  # JSON lines (a one-line file parses as one)
        found = {r.get("instruction"): r.get("difficulty") for r in read_json_records(path, lines=True)}
    values = {}
    for key, value in found.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(
                f"{path}: difficulty {value!r} of {str(key)[:40]!r} is not a number keyed by an instruction"
            )
        values[key] = float(value)
    missing = [i for i in instructions if i not in values]
    if missing:
        raise DataError(
            f"{path}: no difficulty for {len(missing)} instruction(s) under test, the first: {missing[0][:60]!r}; "
            "give one for every instruction, or drop alpaca_eval_difficulty for the joint fit"
        )
    return values


def length_controlled(rows: dict[str, list[dict]], difficulty: dict[str, float] | None, path: str | None) -> dict:
    """Per model: {length_controlled_win_rate, length_controlled: {method, note}}. Rows per model: instruction,
    preference (None when unannotated), len_model, len_base."""
    kept = {m: [r for r in rs if r["preference"] is not None] for m, rs in rows.items()}
    kept = {m: rs for m, rs in kept.items() if rs}
    if difficulty is not None:
        method, note = "file", NOTES["file"].format(path=path)
        rates = {m: _fit_with_difficulty(rs, difficulty) for m, rs in kept.items()}
    else:
        method, note = "joint", NOTES["joint"].format(n=len(kept))
        rates = _fit_joint(kept) if kept else {}
    out = {}
    for model in rows:
        rate = rates.get(model)
        out[model] = {
            "length_controlled_win_rate": None if rate is None else round(rate, 4),
            "length_controlled": {"method": method if rate is not None else None, "note": note},
        }
    return out


def length_feature(rows: list[dict]) -> np.ndarray:
    delta = np.array([r["len_base"] - r["len_model"] for r in rows], dtype=np.float64)
    sd = float(delta.std())
    return np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)


def _fit_with_difficulty(rows: list[dict], difficulty: dict[str, float]) -> float:
    d = np.array([difficulty[r["instruction"]] for r in rows])
    x = np.column_stack([length_feature(rows), d, np.ones(len(rows))])
    beta = fit_logistic(x, _labels(rows), np.full(3, RIDGE))
    return 100 * float(np.mean(_sigmoid(x[:, 1:] @ beta[1:])))


def _fit_joint(rows: dict[str, list[dict]]) -> dict[str, float]:
    models = sorted(rows)
    items = sorted({r["instruction"] for rs in rows.values() for r in rs})
    col = {text: 2 * len(models) + j for j, text in enumerate(items)}
    n = sum(len(rs) for rs in rows.values())
    x = np.zeros((n, 2 * len(models) + len(items)))
    y, owner, start = np.zeros(n), [], 0
    for k, model in enumerate(models):
        rs = rows[model]
        span = slice(start, start + len(rs))
        x[span, 2 * k] = length_feature(rs)
        x[span, 2 * k + 1] = 1.0
        x[np.arange(start, start + len(rs)), [col[r["instruction"]] for r in rs]] = 1.0
        y[span] = _labels(rs)
        owner.append(span)
        start += len(rs)
    penalty = np.full(x.shape[1], RIDGE)
    penalty[2 * len(models) :] = DIFFICULTY_L2
    beta = fit_logistic(x, y, penalty)
    rates = {}
    for k, model in enumerate(models):
        rows_x = x[owner[k]].copy()
        rows_x[:, 2 * k] = 0.0  # the length difference set to zero
        rates[model] = 100 * float(np.mean(_sigmoid(rows_x @ beta)))
    return rates


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Coefficients maximising the soft-label log-likelihood minus 0.5 * sum(penalty * beta^2)."""

    def loss(beta):
        z = x @ beta
        nll = float(np.sum(np.logaddexp(0, z) - y * z)) + 0.5 * float(penalty @ (beta * beta))
        return nll, x.T @ (_sigmoid(z) - y) + penalty * beta

    result = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return result.x


def _labels(rows: list[dict]) -> np.ndarray:
    return np.array([r["preference"] - 1.0 for r in rows], dtype=np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))
